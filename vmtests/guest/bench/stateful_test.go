//go:build vmguest

package bench

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// The stateful benchmark (issue 10, "Speed"): the filter table of a
// stateful firewall, conntrack's verdict on established traffic first and
// many rules behind it.
const (
	statefulRules = 1000
	ctFirst       = "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
	// ctMax is nf_conntrack_max during the benchmark, far above what the
	// new connections of a window and the udpTimeout before it leave in
	// one namespace (each namespace's count is held against it), and
	// ctBuckets the hash table's size (the default, for a 1 GB guest,
	// is about 8,000 of each).
	ctMax     = 1 << 20
	ctBuckets = 1 << 18
	// udpTimeout is the DUTs' nf_conntrack_udp_timeout, that of an
	// entry that has seen no reply (every new connection's): the entries
	// of a window go soon after it. The established flows' entries have
	// seen a reply: nf_conntrack_udp_timeout_stream (udpStreamTimeout) keeps
	// them between windows.
	udpTimeout       = 4 * time.Second
	udpStreamTimeout = 120 * time.Second
)

// The keys of the counts in a stateful lane's sent and recvd maps: what
// the DUT's conntrack makes of the datagrams, per chain. The first rule
// (ctFirst) takes the ESTABLISHED ones, the policy the NEW ones.
func estKey(chain string) string { return chain + " ESTABLISHED" }
func newKey(chain string) string { return chain + " NEW" }

// ctKind is a kind of stateful traffic.
type ctKind struct {
	name string
	spec func(p path) flowSpec
}

var ctKinds = []ctKind{
	{"established", func(p path) flowSpec { return flowSpec{key: estKey(p.chain), sender: establishedSender} }},
	// Another port: the established flows' receivers stay open until
	// the lane without filter's probe.
	{"new connections", func(p path) flowSpec {
		return flowSpec{key: newKey(p.chain), port: flowPort + 1, sender: newConnSender}
	}},
}

// establishedSender is the sender of one UDP flow whose conntrack entry
// in the DUT has seen a reply: its first datagram (NEW) is answered once
// by the receiver's socket, so that every later one is ESTABLISHED. In
// forwarding, the answer crosses the DUT's FORWARD chain too (ESTABLISHED,
// in the reply direction); in local delivery it leaves through OUTPUT.
func establishedSender(t *testing.T, pl *ppsLane, p path, key string, rc *net.UDPConn) io.WriteCloser {
	t.Helper()
	sc := udpConn(t, pl.l.src, srcAddr+":0", rc.LocalAddr().String())
	hello := make([]byte, payloadSize) // tag 0: no receiver counts it
	if _, err := sc.Write(hello); err != nil {
		t.Fatalf("%s, %s: first datagram: %v", pl, p.name, err)
	}
	pl.sent[newKey(p.chain)]++
	buf := make([]byte, 2048)
	_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, from, err := rc.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("%s, %s: the first datagram did not arrive: %v", pl, p.name, err)
	}
	pl.recvd[newKey(p.chain)]++
	if _, err := rc.WriteToUDP(hello, from); err != nil {
		t.Fatalf("%s, %s: answer: %v", pl, p.name, err)
	}
	if p.chain == "FORWARD" {
		pl.sent[estKey(p.chain)]++
	}
	_ = sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := sc.Read(buf); err != nil {
		t.Fatalf("%s, %s: the answer did not arrive: %v", pl, p.name, err)
	}
	if p.chain == "FORWARD" {
		pl.recvd[estKey(p.chain)]++
	}
	if n := ctCount(t, pl); n < 1 {
		t.Fatalf("%s, %s: the DUT's conntrack holds %d entries after an exchange", pl, p.name, n)
	}
	return sc
}

// rawSender sends each datagram, a UDP datagram to the path's receiver,
// from a source address and port of its own (IPPROTO_RAW: the header is
// ours; the kernel fills in the IP checksum, length and id; UDP checksum
// 0: none), so that each is a new connection to the DUT's conntrack: port
// 1024 + i mod 64,512 of 10.0.0.1 + i / 64,512 for the lane's i-th
// datagram (its senders count on from where the last one stopped). No
// tuple comes twice in a lane, whatever the timeouts.
type rawSender struct {
	fd  int
	pkt []byte
	n   *uint32 // the lane's rawSent
}

const rawPorts = 65536 - 1024

func newConnSender(t *testing.T, pl *ppsLane, p path, key string, rc *net.UDPConn) io.WriteCloser {
	t.Helper()
	dst := net.ParseIP(p.dst).To4()
	s := &rawSender{pkt: make([]byte, 20+8+payloadSize), n: &pl.l.rawSent}
	err := pl.l.src.do(func() (err error) {
		s.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		sa := &unix.SockaddrInet4{}
		copy(sa.Addr[:], dst)
		return unix.Connect(s.fd, sa)
	})
	if err != nil {
		t.Fatalf("%s, %s: raw socket: %v", pl, p.name, err)
	}
	h := s.pkt
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)))
	h[8] = 64
	h[9] = unix.IPPROTO_UDP
	copy(h[16:20], dst)
	binary.BigEndian.PutUint16(h[22:], uint16(rc.LocalAddr().(*net.UDPAddr).Port))
	binary.BigEndian.PutUint16(h[24:], uint16(8+payloadSize))
	return s
}

func (s *rawSender) Write(payload []byte) (int, error) {
	i := *s.n
	*s.n++
	binary.BigEndian.PutUint32(s.pkt[12:], 10<<24|(1+i/rawPorts))
	binary.BigEndian.PutUint16(s.pkt[20:], uint16(1024+i%rawPorts))
	copy(s.pkt[28:], payload)
	if _, err := unix.Write(s.fd, s.pkt); err != nil {
		return 0, err
	}
	return len(payload), nil
}

func (s *rawSender) Close() error { return unix.Close(s.fd) }

// clientNet is where rawSender's sources are.
var clientNet = &net.IPNet{IP: net.IPv4(10, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)}

// routeClients routes clientNet via src in l's DUT, so that its
// datagrams from there pass any reverse-path filter.
func routeClients(t *testing.T, l *lane) {
	t.Helper()
	link, err := l.dut.nl.LinkByName("dut-s")
	if err != nil {
		t.Fatal(err)
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: clientNet, Gw: net.ParseIP(srcAddr)}
	if err := l.dut.nl.RouteAdd(r); err != nil {
		t.Fatalf("route %v via %s: %v", clientNet, srcAddr, err)
	}
}

// ctCount is the number of conntrack entries in pl's DUT.
func ctCount(t *testing.T, pl *ppsLane) int64 {
	t.Helper()
	var b []byte
	err := pl.l.dut.do(func() (err error) {
		b, err = os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ctTimeouts sets the UDP timeouts of l's DUT (per namespace).
func ctTimeouts(t *testing.T, l *lane) {
	t.Helper()
	set := func(name string, d time.Duration) error {
		return os.WriteFile("/proc/sys/net/netfilter/"+name, []byte(strconv.Itoa(int(d.Seconds()))+"\n"), 0o644)
	}
	err := l.dut.do(func() error {
		if err := set("nf_conntrack_udp_timeout", udpTimeout); err != nil {
			return err
		}
		return set("nf_conntrack_udp_timeout_stream", udpStreamTimeout)
	})
	if err != nil {
		t.Fatalf("UDP timeouts: %v", err)
	}
}

// noFilterNat switches conntrack on in the lane without filter: a nat
// table whose only rule, in OUTPUT, nothing of the benchmark reaches
// (xt_conntrack's checkentry is what asks for conntrack in a namespace;
// nat's own hooks do not). nat's chains see only a connection's first
// packet: established datagrams cross nat's hooks without walking a
// chain; each new connection walks two empty ones and gets nat's null
// binding.
const noFilterNat = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n" +
	"-A OUTPUT -m conntrack --ctstate INVALID\nCOMMIT\n"

const emptyNat = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n"

// estProbe counts, in the lane without filter, the datagrams that its
// conntrack calls ESTABLISHED in FORWARD and INPUT: a mangle table, set
// only after the measurements.
const estProbe = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n" +
	"-A INPUT -m conntrack --ctstate ESTABLISHED\n-A FORWARD -m conntrack --ctstate ESTABLISHED\nCOMMIT\n"

const emptyMangle = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n"

// TestStateful is the packet rate through a stateful firewall's filter
// table, bpfilter against ip_tables, in the manner of TestThroughput
// (lanes, windows, pairs, medians): the DUT's INPUT and FORWARD chains
// hold ctFirst, then statefulRules rules that the datagrams do not match
// (missRules), policy ACCEPT. A crossover (crossover): a pair of lanes,
// each backend's table in one and then in the other, and a lane without
// filter, with conntrack on in each (xt_conntrack's rule, bpfilter,
// noFilterNat), so that the lanes differ in their filter only. Two kinds
// of traffic per path: "established", one UDP flow whose conntrack entry
// has seen a reply before the windows (ctFirst accepts its datagrams),
// and "new connections", each datagram from an address and port of its
// own (a new conntrack entry, which the whole table judges and the policy
// accepts). What must hold for the figures to mean anything is checked,
// no speed: each lane runs its own backend's hooks only (statsWindows,
// hasFilterName); the first rule counted every established datagram that
// arrived and the policy every new one (the lane without filter: a mangle
// table's conntrack rule after the measurements, its flows still
// ESTABLISHED); each new connection left a conntrack entry, the table
// never filled, and the kernel logged no drop for it. What did not arrive
// is reported, per lane.
func TestStateful(t *testing.T) {
	bigReceiveBuffers(t)
	gt.Use(t, gt.IPTables)
	for _, m := range []string{"xt_tcpudp", "xt_conntrack", "iptable_nat", "iptable_mangle"} {
		gt.MustRun(t, "modprobe", m)
	}
	t.Cleanup(func() {
		for _, m := range []string{"iptable_mangle", "iptable_nat"} {
			if gt.Loaded(m) {
				if out, err := gt.Run("rmmod", m); err != nil {
					t.Errorf("rmmod %s: %v\n%s", m, err, out)
				}
			}
		}
	})
	writeSysctl(t, "/proc/sys/net/netfilter/nf_conntrack_max", strconv.Itoa(ctMax))
	writeSysctl(t, "/sys/module/nf_conntrack/parameters/hashsize", strconv.Itoa(ctBuckets))
	kmsg := gt.NewKmsg(t)

	none := newPPSLane(t, 0, noFilter)
	none.l.dut.restore(t, noFilterNat)
	pair := newCrossPair(t, statefulRules, missRulesAfter(ctFirst, statefulRules))
	for _, l := range []*lane{none.l, pair.lanes[0], pair.lanes[1]} {
		ctTimeouts(t, l)
		routeClients(t, l)
	}

	type key struct {
		path, kind string
		be         gt.Backend
		rules      int
	}
	stats := map[key]*windowStats{}
	ratios := map[key]*[2][]float64{} // bpfilter's over ip_tables', per placement
	progNs := map[key][]float64{}     // bpfilter's program per run, per placement
	for _, p := range paths {
		for _, kind := range ctKinds {
			stats[key{p.name, kind.name, none.be, noFilter}] = &windowStats{}
			for _, be := range backends {
				stats[key{p.name, kind.name, be, statefulRules}] = &windowStats{}
			}
			ratios[key{p.name, kind.name, gt.Bpfilter, statefulRules}] = &[2][]float64{}
		}
	}
	established := map[string]*flow{} // the lane without filter's, of the last placement
	crossover(t, []crossPair{pair}, []*ppsLane{none}, func(phase int, pls placement) {
		all := append([]*ppsLane{none}, pls.lanes()...)
		for _, p := range paths {
			for _, kind := range ctKinds {
				flows := map[*ppsLane]*flow{}
				for _, pl := range all {
					flows[pl] = openFlowSpec(t, pl, p, kind.spec(p))
				}
				if kind.name == "established" {
					// Past 2 s, conntrack refreshes a replied entry with
					// the stream timeout: from here on, no gap between
					// windows lets it expire.
					time.Sleep(2*time.Second + 100*time.Millisecond)
					for _, pl := range all {
						flows[pl].window(t, 10*time.Millisecond)
					}
				}
				stat := func(pl *ppsLane) *windowStats { return stats[key{p.name, kind.name, pl.be, pl.rules}] }
				rs, runs := interleaved(t, all, pls, flows, stat)
				for _, pl := range all {
					r := runs[pl]
					t.Logf("%s, %s, placement %d, %s: %d sent, %d writes failed, %d received; per block: %s",
						p.name, kind.name, phase, pl, r.sent, r.failed, r.received, rates(stat(pl).rate[len(stat(pl).rate)-ppsBlocks:]))
					if kind.name == "new connections" {
						checkNewEntries(t, pl, r)
					}
				}
				ratios[key{p.name, kind.name, gt.Bpfilter, statefulRules}][phase] = rs[0]
				for pl, ns := range statsWindows(t, p.name+", "+kind.name, all, flows) {
					k := key{p.name, kind.name, pl.be, pl.rules}
					progNs[k] = append(progNs[k], ns)
				}
				for _, pl := range all {
					if pl == none && kind.name == "established" && phase == 1 {
						established[p.name] = flows[pl] // kept open for the probe
						continue
					}
					flows[pl].close(t)
				}
			}
		}
	}, checkStateCounters)

	// The lane without filter: its flows are still ESTABLISHED (had an
	// entry expired, the next datagram would have made an unreplied one).
	none.l.dut.restore(t, estProbe)
	probed := map[string]int64{}
	for _, p := range paths {
		m := established[p.name].window(t, 100*time.Millisecond)
		probed[p.chain] = m.received
	}
	for _, p := range paths {
		pkts, _ := ruleCounters(t, none, "mangle", p.chain, "ctstate ESTABLISHED")
		if pkts < probed[p.chain] {
			t.Errorf("%s, %s: %d datagrams of the established flow arrived, conntrack called %d ESTABLISHED",
				none, p.name, probed[p.chain], pkts)
		}
		established[p.name].close(t)
	}
	none.l.dut.restore(t, emptyMangle)
	none.l.dut.restore(t, emptyNat)

	if full := kmsg.Grep(regexp.MustCompile(`nf_conntrack: table full`)); len(full) > 0 {
		t.Errorf("conntrack dropped packets:\n%s", strings.Join(full, "\n"))
	}

	var tb strings.Builder
	fmt.Fprintf(&tb, "packets/s received through the DUT, UDP, 64-byte packets; INPUT and FORWARD: %q, then %s rules\n",
		ctFirst, thousands(statefulRules))
	fmt.Fprintf(&tb, "that match none of them, policy ACCEPT; medians of %d blocks per backend (both placements), each %d\n", 2*ppsBlocks, ppsTurns)
	fmt.Fprintf(&tb, "turns of %v per lane, lanes interleaved; ratio: geometric mean of the two placements' medians of their\n", ppsSlice)
	tb.WriteString("blocks' ratios (range of all blocks); lane: the first lane's own rate over the second's, which cancelled; lost: median fraction\n")
	tb.WriteString("of the sent datagrams that did not arrive; no filter: conntrack on, by a nat table's rule in OUTPUT:\n")
	tb.WriteString("bound: no filter's rate over ip_tables', the ratio that a filter costing nothing would reach:\n")
	tb.WriteString("| path | kind | no filter | ip_tables | bpfilter | bpfilter / ip_tables | bound | lane | lost: no filter / ip_tables / bpfilter | bpfilter's program |\n")
	tb.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range paths {
		for _, kind := range ctKinds {
			st := func(be gt.Backend, rules int) *windowStats { return stats[key{p.name, kind.name, be, rules}] }
			n, ipt, bpf := st(none.be, noFilter), st(gt.IPTables, statefulRules), st(gt.Bpfilter, statefulRules)
			r, lo, hi, lane := crossRatio(*ratios[key{p.name, kind.name, gt.Bpfilter, statefulRules}])
			fmt.Fprintf(&tb, "| %s | %s | %s | %s | %s | %.2f (%.2f..%.2f) | %.2f | %.2f | %.0f / %.0f / %.0f %% | %s ns |\n",
				p.name, kind.name, thousands(int64(medianF(n.rate))),
				thousands(int64(medianF(ipt.rate))), thousands(int64(medianF(bpf.rate))),
				r, lo, hi, medianF(n.rate)/medianF(ipt.rate), lane, 100*medianF(n.lost), 100*medianF(ipt.lost), 100*medianF(bpf.lost),
				thousands(int64(meanF(progNs[key{p.name, kind.name, gt.Bpfilter, statefulRules}])+0.5)))
		}
	}
	t.Log("\n" + tb.String())
}

// checkNewEntries fails t unless each datagram of the last block of new
// connections of r that may have arrived left its conntrack entry in pl's
// DUT (all but those that went missing, unless the block took so long
// that the first might have timed out), and the table is below
// nf_conntrack_max.
func checkNewEntries(t *testing.T, pl *ppsLane, r *laneRun) {
	t.Helper()
	n := ctCount(t, pl)
	if n >= ctMax {
		t.Errorf("%s: the DUT's conntrack holds %d entries: full", pl, n)
	}
	if want := r.lastSent - (r.sent - r.received); r.lastTook < udpTimeout-time.Second && n < want {
		t.Errorf("%s: %d new connections arrived within %v, the DUT's conntrack holds %d entries",
			pl, want, r.lastTook.Round(time.Millisecond), n)
	}
}

// ruleCounters are the packets and bytes of the first rule of chain in
// pl's DUT, which must show want (iptables-legacy -L -v -x -n).
func ruleCounters(t *testing.T, pl *ppsLane, table, chain, want string) (pkts, bytes int64) {
	t.Helper()
	out := pl.l.dut.mustRun(t, "", "iptables-legacy", "-t", table, "-L", chain, "-v", "-x", "-n")
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !strings.Contains(lines[2], want) {
		t.Fatalf("%s: %s's first rule is not %q:\n%s", pl, chain, want, strings.Join(lines[:min(3, len(lines))], "\n"))
	}
	f := strings.Fields(lines[2])
	pkts, _ = strconv.ParseInt(f[0], 10, 64)
	bytes, _ = strconv.ParseInt(f[1], 10, 64)
	return pkts, bytes
}

// checkStateCounters fails t unless, in each chain of pl, ctFirst
// counted every ESTABLISHED datagram that arrived and none that was not
// sent, and the policy the NEW ones, at 64 bytes each.
func checkStateCounters(t *testing.T, pl *ppsLane) {
	t.Helper()
	for _, p := range paths {
		est, estBytes := ruleCounters(t, pl, "filter", p.chain, "ctstate RELATED,ESTABLISHED")
		out := pl.l.dut.mustRun(t, "", "iptables-legacy", "-t", "filter", "-L", p.chain, "-v", "-x", "-n")
		m := policyRE.FindStringSubmatch(out)
		if m == nil {
			first, _, _ := strings.Cut(out, "\n")
			t.Fatalf("%s: no policy counters in %q", pl, first)
		}
		pol, _ := strconv.ParseInt(m[1], 10, 64)
		polBytes, _ := strconv.ParseInt(m[2], 10, 64)
		for _, c := range []struct {
			what        string
			pkts, bytes int64
			recvd, sent int64
		}{
			{"first rule (ESTABLISHED)", est, estBytes, pl.recvd[estKey(p.chain)], pl.sent[estKey(p.chain)]},
			{"policy (NEW)", pol, polBytes, pl.recvd[newKey(p.chain)], pl.sent[newKey(p.chain)]},
		} {
			if c.pkts < c.recvd || c.pkts > c.sent || c.bytes != 64*c.pkts {
				t.Errorf("%s: %s %s counted %d packets, %d bytes; want %d..%d packets of 64 bytes",
					pl, p.chain, c.what, c.pkts, c.bytes, c.recvd, c.sent)
			}
		}
		t.Logf("%s: %s: first rule %d packets, policy %d", pl, p.chain, est, pol)
	}
}
