//go:build vmguest

package bench

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
	"github.com/vishvananda/netlink"
)

// path is how the benchmark datagrams meet the DUT's filter table.
type path struct {
	name  string
	chain string // the chain that judges them
	dst   string // where they go
	rx    func(*lane) *ns
}

var paths = []path{
	{"forwarding", "FORWARD", dstAddr, func(l *lane) *ns { return l.dst }},
	{"local delivery", "INPUT", dutSrcEnd, func(l *lane) *ns { return l.dut }},
}

const (
	ppsWindow = time.Second // one measurement
	ppsPairs  = 9           // pairs of windows (ip_tables, bpfilter) per path and rule count
)

// ppsRules are the rule counts of the packet-rate benchmark.
var ppsRules = []int{0, 1000}

// missRules is a filter table of policy ACCEPT whose INPUT and FORWARD
// chains each hold n rules that the benchmark datagrams (UDP to the
// path's dst, port flowPort) do not match: "-d dst/32 -p udp --dport P
// -j DROP" for n other ports. ip_tables examines each rule in full
// (address, protocol, then the udp match, which fails on the port).
func missRules(n int) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for _, p := range paths {
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "-A %s -d %s/32 -p udp --dport %d -j DROP\n", p.chain, p.dst, 20000+i)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// ppsLane is a lane of TestThroughput with its table.
type ppsLane struct {
	be    gt.Backend
	rules int
	l     *lane
	sent  map[string]int64 // datagrams sent through each chain, warm-ups included
	recvd map[string]int64 // and received
}

// TestThroughput is the packet rate through a DUT with 0 and 1,000 rules
// that match nothing, bpfilter against ip_tables: a Go sender in src
// floods 64-byte UDP datagrams for ppsWindow, and the receiver counts what
// arrives. The four tables (two backends, two rule counts) live at once,
// each in a lane of its own: the ip_tables ones are set before bpfilter
// is loaded, and stay in force after (bpfilter takes over the filter
// table's sockopts, not the tables ip_tables already holds). So the
// backends can take turns, window by window, without reloading modules:
// for each path and rule count, ppsPairs pairs of adjacent windows, one
// per backend, in alternating order. A machine that slows down for a
// while slows both windows of a pair; the ratio is the median of the
// pairs' ratios, each rate the median of its windows. Afterwards each
// chain's policy counters must show the datagrams, at 64 bytes each: both
// backends judged every one of them.
func TestThroughput(t *testing.T) {
	bigReceiveBuffers(t)
	gt.Use(t, gt.IPTables)
	gt.MustRun(t, "modprobe", "xt_tcpudp")
	lanes := map[gt.Backend]map[int]*ppsLane{gt.IPTables: {}, gt.Bpfilter: {}}
	for _, be := range backends { // ip_tables first: its tables cannot be set while bpfilter is loaded
		if be == gt.Bpfilter {
			gt.MustRun(t, "insmod", gt.GoodKO)
			t.Cleanup(func() { gt.Unload(t) })
		}
		for _, n := range ppsRules {
			pl := &ppsLane{be: be, rules: n, l: newLane(t), sent: map[string]int64{}, recvd: map[string]int64{}}
			pl.l.dut.restore(t, missRules(n))
			lanes[be][n] = pl
		}
	}
	for _, be := range backends {
		for _, pl := range lanes[be] {
			checkOwner(t, pl)
		}
	}

	var tb strings.Builder
	fmt.Fprintf(&tb, "packets/s through the DUT, UDP, 64-byte packets; medians of %d windows of %v per backend,\n", ppsPairs, ppsWindow)
	tb.WriteString("ratio: median (and range) of the pairs of adjacent windows:\n")
	tb.WriteString("| path | rules | ip_tables | bpfilter | bpfilter / ip_tables |\n|---|---|---|---|---|\n")
	for _, p := range paths {
		for _, n := range ppsRules {
			flows := map[gt.Backend]*flow{}
			for _, be := range backends {
				flows[be] = openFlow(t, lanes[be][n], p)
			}
			pps := map[gt.Backend][]float64{}
			var ratios []float64
			for k := 0; k < ppsPairs; k++ {
				order := backends
				if k%2 == 1 {
					order = []gt.Backend{backends[1], backends[0]}
				}
				got := map[gt.Backend]float64{}
				for _, be := range order {
					m := flows[be].window(t, ppsWindow)
					got[be] = m.pps
					pps[be] = append(pps[be], m.pps)
					t.Logf("%s, %d rules, pair %d, %s: %.0f packets/s (%d sent, %d writes failed, %d received)",
						p.name, n, k+1, be, m.pps, m.sent, m.failed, m.received)
				}
				ratios = append(ratios, got[gt.Bpfilter]/got[gt.IPTables])
			}
			for _, be := range backends {
				flows[be].close(t)
			}
			fmt.Fprintf(&tb, "| %s | %s | %s | %s | %.2f (%.2f..%.2f) |\n", p.name, thousands(int64(n)),
				thousands(int64(medianF(pps[gt.IPTables]))), thousands(int64(medianF(pps[gt.Bpfilter]))),
				medianF(ratios), slices.Min(ratios), slices.Max(ratios))
		}
	}

	// The counters: bpfilter's first, then ip_tables' (which iptables
	// reaches only when bpfilter is gone).
	for _, n := range ppsRules {
		checkPolicyCounters(t, lanes[gt.Bpfilter][n])
	}
	gt.MustRun(t, "rmmod", "bpfilter")
	for _, n := range ppsRules {
		pl := lanes[gt.IPTables][n]
		checkPolicyCounters(t, pl)
		// Emptied, the table no longer pins iptable_filter.
		pl.l.dut.restore(t, gt.EmptyFilter)
	}
	gt.Ensure(t, gt.IPTables)
	t.Log("\n" + tb.String())
}

// checkOwner fails t unless the filter table of pl's DUT is held by
// pl.be: ip_tables has a filter table there exactly for ip_tables lanes,
// and bpfilter's filters sit on the DUT's interfaces exactly for bpfilter
// lanes.
func checkOwner(t *testing.T, pl *ppsLane) {
	t.Helper()
	var names []byte
	err := pl.l.dut.do(func() (err error) {
		names, err = os.ReadFile("/proc/thread-self/net/ip_tables_names")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ipt := slices.Contains(strings.Fields(string(names)), "filter")
	var ours []string
	for _, dev := range []string{"dut-s", "dut-d"} {
		link, err := pl.l.dut.nl.LinkByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			fs, err := pl.l.dut.nl.FilterList(link, parent)
			if err != nil {
				t.Fatalf("filters of %s: %v", dev, err)
			}
			for _, f := range fs {
				if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, "bpfilter_") {
					ours = append(ours, dev+":"+bf.Name)
				}
			}
		}
	}
	switch pl.be {
	case gt.IPTables:
		if !ipt || len(ours) != 0 {
			t.Fatalf("ip_tables lane of %d rules: ip_tables' filter table there: %v, bpfilter's filters: %v",
				pl.rules, ipt, ours)
		}
	case gt.Bpfilter:
		if ipt || len(ours) != 4 {
			t.Fatalf("bpfilter lane of %d rules: ip_tables' filter table there: %v, bpfilter's filters: %v (want 4)",
				pl.rules, ipt, ours)
		}
	}
}

type ppsResult struct {
	pps                    float64
	sent, failed, received int64
}

// flow is the datagrams of one path through one lane: its sockets, open
// from openFlow to close.
type flow struct {
	pl  *ppsLane
	p   path
	sc  *net.UDPConn
	rc  *net.UDPConn
	r   *receiver
	tag uint32
}

// openFlow opens the sockets of p through pl and warms the path up
// (neighbours resolved, routes cached): some datagrams must arrive.
func openFlow(t *testing.T, pl *ppsLane, p path) *flow {
	t.Helper()
	to := net.JoinHostPort(p.dst, strconv.Itoa(flowPort))
	f := &flow{pl: pl, p: p, tag: newTag()}
	f.rc = udpConn(t, p.rx(pl.l), to, "")
	if err := f.rc.SetReadBuffer(8 << 20); err != nil {
		t.Fatal(err)
	}
	f.sc = udpConn(t, pl.l.src, srcAddr+":0", to)
	f.r = startReceiver(f.rc, f.tag)
	warm, _ := flood(f.sc, f.tag, 100*time.Millisecond)
	pl.sent[p.chain] += warm
	if !gt.Eventually(3*time.Second, func() bool { return f.r.n.Load() > 0 }) {
		t.Fatalf("%s lane of %d rules, %s: none of %d warm-up datagrams arrived", pl.be, pl.rules, p.name, warm)
	}
	if !f.r.quiet(200*time.Millisecond, 10*time.Second) {
		t.Fatal("warm-up datagrams kept coming")
	}
	pl.recvd[p.chain] += f.r.n.Load()
	return f
}

// window floods for d and counts what arrived, until none came for 100 ms.
func (f *flow) window(t *testing.T, d time.Duration) ppsResult {
	t.Helper()
	before := f.r.n.Load()
	sent, failed := f.flood(d)
	if !f.r.quiet(100*time.Millisecond, 30*time.Second) {
		t.Fatal("datagrams kept coming 30 s after the sender stopped")
	}
	got := f.r.n.Load() - before
	f.pl.recvd[f.p.chain] += got
	if got == 0 {
		t.Fatalf("%s lane of %d rules, %s: none of %d datagrams arrived", f.pl.be, f.pl.rules, f.p.name, sent)
	}
	return ppsResult{pps: float64(got) / d.Seconds(), sent: sent, failed: failed, received: got}
}

func (f *flow) flood(d time.Duration) (sent, failed int64) {
	sent, failed = flood(f.sc, f.tag, d)
	f.pl.sent[f.p.chain] += sent
	return sent, failed
}

func (f *flow) close(t *testing.T) {
	t.Helper()
	f.r.close(t)
	f.rc.Close()
	f.sc.Close()
}

var policyRE = regexp.MustCompile(`\(policy ACCEPT (\d+) packets, (\d+) bytes\)`)

// checkPolicyCounters fails t unless the policy of each chain of pl
// counted every datagram that arrived through it and none that was not
// sent, at 64 bytes each.
func checkPolicyCounters(t *testing.T, pl *ppsLane) {
	t.Helper()
	for _, p := range paths {
		out := pl.l.dut.mustRun(t, "", "iptables-legacy", "-t", "filter", "-L", p.chain, "-v", "-x", "-n")
		m := policyRE.FindStringSubmatch(out)
		if m == nil {
			first, _, _ := strings.Cut(out, "\n")
			t.Fatalf("%s lane of %d rules: no policy counters in %q", pl.be, pl.rules, first)
		}
		pkts, _ := strconv.ParseInt(m[1], 10, 64)
		bytes, _ := strconv.ParseInt(m[2], 10, 64)
		if pkts < pl.recvd[p.chain] || pkts > pl.sent[p.chain] || bytes != 64*pkts {
			t.Errorf("%s lane of %d rules: %s policy counted %d packets, %d bytes; want %d..%d packets of 64 bytes",
				pl.be, pl.rules, p.chain, pkts, bytes, pl.recvd[p.chain], pl.sent[p.chain])
		}
	}
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 0 {
		return (s[m-1] + s[m]) / 2
	}
	return s[m]
}

// thousands formats n with commas: 12,345.
func thousands(n int64) string {
	if n < 0 {
		return "-" + thousands(-n)
	}
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
