//go:build vmguest

package bench

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
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
	ppsWindow = time.Second // one window of statsWindows
)

// laneRules are the rule counts of TestThroughput's lane pairs.
var laneRules = []int{0, 1, 1000, 10000}

// noFilter is the rule count of the lane without any filter table: no
// backend has hooks in its DUT.
const noFilter = -1

// missRules is a filter table of policy ACCEPT whose INPUT and FORWARD
// chains each hold n rules that the benchmark datagrams (UDP to the
// path's dst, port flowPort) do not match: "-d dst/32 -p udp --dport P
// -j DROP" for n other ports. ip_tables examines each rule in full
// (address, protocol, then the udp match, which fails on the port).
func missRules(n int) string { return missRulesAfter("", n) }

// missRulesAfter is missRules(n) with first (a rule's matches and target,
// if not empty) ahead of the n rules in INPUT and FORWARD.
func missRulesAfter(first string, n int) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for _, p := range paths {
		if first != "" {
			fmt.Fprintf(&b, "-A %s %s\n", p.chain, first)
		}
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "-A %s -d %s/32 -p udp --dport %d -j DROP\n", p.chain, p.dst, 20000+i)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// ppsLane is a lane of TestThroughput with its table.
type ppsLane struct {
	be    gt.Backend // unused for the noFilter lane
	rules int        // or noFilter
	l     *lane
	sent  map[string]int64 // datagrams sent through each chain (or flowSpec.key), warm-ups included
	recvd map[string]int64 // and received
}

// newPPSLane is a new lane for a table of be of n rules (or noFilter),
// without a table yet.
func newPPSLane(t *testing.T, be gt.Backend, n int) *ppsLane {
	t.Helper()
	return &ppsLane{be: be, rules: n, l: newLane(t), sent: map[string]int64{}, recvd: map[string]int64{}}
}

func (pl *ppsLane) String() string {
	if pl.rules == noFilter {
		return "lane without filter"
	}
	return fmt.Sprintf("%s lane of %d rules", pl.be, pl.rules)
}

// windowStats are the blocks of one lane and path (interleaved).
type windowStats struct {
	rate []float64 // sent per second, per block
	lost []float64 // fraction of the sent that did not arrive, per run
}

// nsPerPacket is the time per datagram at the median sending rate: the
// sender's write runs the whole path to the receiving socket (veth hands
// the packet to the backlog, which the write's bottom-half exit
// processes on the same CPU), so the rate at which one thread can send is
// the inverse of the whole path's cost per packet.
func (w *windowStats) nsPerPacket() float64 { return 1e9 / medianF(w.rate) }

// TestThroughput is the packet rate through a DUT whose rules match
// nothing, bpfilter against ip_tables, and the per-packet cost of the
// whole path that follows from it: a Go sender in src floods 64-byte UDP
// datagrams, and the receiver counts what arrives. Each
// rule count (0, 1, 1,000, 10,000) has a pair of lanes, and a lane
// without any filter table is the reference. The benchmark is a
// crossover (crossover): each backend holds each rule count's table in
// one lane of its pair, then in the other. In each placement, ip_tables'
// tables are set before bpfilter is loaded and stay in force after
// (bpfilter takes over the filter table's sockopts, not the tables
// ip_tables already holds); bpfilter registers its hooks only in the
// namespaces whose table it was given, so each lane runs the hooks of its
// own backend only (checked: see statsWindows). So all lanes take
// turns at sending, slice by slice (interleaved), without reloading
// modules; each placement's ratio is the median of its blocks' ratios,
// and the ratio reported the geometric mean of the two placements'. Then,
// with the kernel's BPF run-time statistics on, one more window per lane
// gives the time bpfilter's program itself takes on this path.
// Afterwards each chain's policy counters must show the datagrams, at 64
// bytes each: both backends judged every one of them.
func TestThroughput(t *testing.T) {
	bigReceiveBuffers(t)
	gt.Use(t, gt.IPTables)
	gt.MustRun(t, "modprobe", "xt_tcpudp")
	none := newPPSLane(t, 0, noFilter)
	pairs := make([]crossPair, len(laneRules))
	for i, n := range laneRules {
		pairs[i] = newCrossPair(t, n, missRules(n))
	}

	type key struct {
		path  string
		be    gt.Backend
		rules int
	}
	noneKey := func(p path) key { return key{p.name, gt.IPTables, noFilter} }
	stats := map[key]*windowStats{}
	ratios := map[key]*[2][]float64{} // bpfilter's over ip_tables', per placement
	progNs := map[key][]float64{}     // bpfilter's program per run, per placement
	for _, p := range paths {
		stats[noneKey(p)] = &windowStats{}
		for _, n := range laneRules {
			for _, be := range backends {
				stats[key{p.name, be, n}] = &windowStats{}
			}
			ratios[key{p.name, gt.Bpfilter, n}] = &[2][]float64{}
		}
	}
	crossover(t, pairs, []*ppsLane{none}, func(phase int, pls placement) {
		all := append([]*ppsLane{none}, pls.lanes()...)
		for _, p := range paths {
			flows := map[*ppsLane]*flow{}
			for _, pl := range all {
				flows[pl] = openFlow(t, pl, p)
			}
			stat := func(pl *ppsLane) *windowStats { return stats[key{p.name, pl.be, pl.rules}] }
			rs, runs := interleaved(t, all, pls, flows, stat)
			for _, pl := range all {
				r := runs[pl]
				t.Logf("%s, placement %d, %s: %d sent, %d writes failed, %d received; per block: %s",
					p.name, phase, pl, r.sent, r.failed, r.received, rates(stat(pl).rate[len(stat(pl).rate)-ppsBlocks:]))
			}
			for i, n := range laneRules {
				ratios[key{p.name, gt.Bpfilter, n}][phase] = rs[i]
			}
			for pl, ns := range statsWindows(t, p.name, all, flows) {
				k := key{p.name, pl.be, pl.rules}
				progNs[k] = append(progNs[k], ns)
			}
			for _, pl := range all {
				flows[pl].close(t)
			}
		}
	}, checkPolicyCounters)

	var tb strings.Builder
	fmt.Fprintf(&tb, "packets/s through the DUT, UDP, 64-byte packets: medians of %d blocks per backend (both placements),\n", 2*ppsBlocks)
	fmt.Fprintf(&tb, "each %d turns of %v per lane, lanes interleaved; ratio: geometric mean of the two placements' medians\n", ppsTurns, ppsSlice)
	tb.WriteString("of their blocks' ratios (range of all blocks); lane: the first lane's own rate over the second's, which cancelled:\n")
	tb.WriteString("| path | rules | ip_tables | bpfilter | bpfilter / ip_tables | lane |\n|---|---|---|---|---|---|\n")
	for _, p := range paths {
		for _, n := range laneRules {
			ipt, bpf := stats[key{p.name, gt.IPTables, n}], stats[key{p.name, gt.Bpfilter, n}]
			r, lo, hi, lane := crossRatio(*ratios[key{p.name, gt.Bpfilter, n}])
			fmt.Fprintf(&tb, "| %s | %s | %s | %s | %.2f (%.2f..%.2f) | %.2f |\n", p.name, thousands(int64(n)),
				thousands(int64(medianF(ipt.rate))), thousands(int64(medianF(bpf.rate))), r, lo, hi, lane)
		}
	}
	tb.WriteString("\nper-packet cost of the whole path, from the median sending rate (1 s / packets sent per second),\n")
	tb.WriteString("and beyond the lane without filter; bpfilter's program alone on this path (BPF run-time statistics,\n")
	tb.WriteString("mean of the placements); in brackets: the median fraction of the sent datagrams that did not arrive:\n")
	tb.WriteString("| path | rules | ip_tables | bpfilter | bpfilter's program |\n|---|---|---|---|---|\n")
	for _, p := range paths {
		base := stats[noneKey(p)]
		fmt.Fprintf(&tb, "| %s | no filter | %s ns [%.0f%%] | | |\n", p.name,
			thousands(int64(base.nsPerPacket()+0.5)), 100*medianF(base.lost))
		cell := func(w *windowStats) string {
			d := w.nsPerPacket() - base.nsPerPacket()
			return fmt.Sprintf("%s ns (%+d) [%.0f%%]", thousands(int64(w.nsPerPacket()+0.5)), int64(d), 100*medianF(w.lost))
		}
		for _, n := range laneRules {
			fmt.Fprintf(&tb, "| %s | %s | %s | %s | %s ns |\n", p.name, thousands(int64(n)),
				cell(stats[key{p.name, gt.IPTables, n}]), cell(stats[key{p.name, gt.Bpfilter, n}]),
				thousands(int64(meanF(progNs[key{p.name, gt.Bpfilter, n}])+0.5)))
		}
	}
	t.Log("\n" + tb.String())
}

// rates is xs in thousands of packets per second, for the log.
func rates(xs []float64) string {
	var b strings.Builder
	for i, x := range xs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1fk", x/1000)
	}
	return b.String()
}

func meanF(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// The lanes of a measurement take turns at sending, a slice each, in an
// order shuffled anew for every turn (a lane that always came after the
// slowest one ran faster than the others: its receiver's CPU had been
// idle). A block is ppsTurns such rounds; each
// lane's rate in a block is what it sent over the time its slices took.
// Lanes a few milliseconds apart see the same machine: a shared host that
// slows down for a second slows every lane of the rotation alike, which
// windows of a second each, one lane after the other, did not (adjacent
// 1 s windows of one lane differed by up to 1.6x in an earlier run).
const (
	ppsSlice  = 25 * time.Millisecond
	ppsTurns  = 8
	ppsBlocks = 10 // per path, kind and placement
)

// laneRun is what one lane sent in interleaved and what arrived.
type laneRun struct {
	sent, failed, received int64
	lastSent               int64         // in the last block
	lastTook               time.Duration // the last block, all lanes
}

// interleaved floods the flows of all in turn, ppsBlocks blocks, and adds
// each lane's rate per block to stats(lane); then, once nothing comes any
// more, what did not arrive. It returns, for each pair of pls, bpfilter's
// rate over ip_tables' per block, and what each lane sent and received.
func interleaved(t *testing.T, all []*ppsLane, pls placement, flows map[*ppsLane]*flow, stats func(*ppsLane) *windowStats) ([][]float64, map[*ppsLane]*laneRun) {
	t.Helper()
	runs := map[*ppsLane]*laneRun{}
	before := map[*ppsLane]int64{}
	for _, pl := range all {
		runs[pl] = &laneRun{}
		before[pl] = flows[pl].r.n.Load()
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("lane order seed %d", seed)
	ratios := make([][]float64, len(pls))
	for b := 0; b < ppsBlocks; b++ {
		sent := map[*ppsLane]int64{}
		took := map[*ppsLane]time.Duration{}
		blockStart := time.Now()
		for turn := 0; turn < ppsTurns; turn++ {
			for _, j := range rng.Perm(len(all)) {
				pl := all[j]
				start := time.Now()
				n, failed := flows[pl].flood(ppsSlice)
				took[pl] += time.Since(start)
				sent[pl] += n
				runs[pl].failed += failed
			}
		}
		rate := map[*ppsLane]float64{}
		for _, pl := range all {
			rate[pl] = float64(sent[pl]) / took[pl].Seconds()
			stats(pl).rate = append(stats(pl).rate, rate[pl])
			runs[pl].sent += sent[pl]
			runs[pl].lastSent = sent[pl]
			runs[pl].lastTook = time.Since(blockStart)
		}
		for i, pair := range pls {
			ratios[i] = append(ratios[i], rate[pair[gt.Bpfilter]]/rate[pair[gt.IPTables]])
		}
	}
	for _, pl := range all {
		f := flows[pl]
		if !f.r.quiet(100*time.Millisecond, 30*time.Second) {
			t.Fatalf("%s, %s: datagrams kept coming 30 s after the senders stopped", pl, f.p.name)
		}
		r := runs[pl]
		r.received = f.r.n.Load() - before[pl]
		pl.recvd[f.key] += r.received
		if r.received == 0 {
			t.Fatalf("%s, %s: none of %d datagrams arrived", pl, f.p.name, r.sent)
		}
		stats(pl).lost = append(stats(pl).lost, 1-float64(r.received)/float64(r.sent))
	}
	return ratios, runs
}

// statsWindows is one more window of each lane's flow with the kernel's
// BPF run-time statistics on (what names the path, for the log): it fails
// t unless only bpfilter's lanes run its programs, at least once per
// datagram that arrived, and returns the mean time of one run in each of
// bpfilter's lanes, in ns.
func statsWindows(t *testing.T, what string, all []*ppsLane, flows map[*ppsLane]*flow) map[*ppsLane]float64 {
	t.Helper()
	res := map[*ppsLane]float64{}
	statsOn, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("BPF_ENABLE_STATS: %v", err)
	}
	for _, pl := range all {
		before := progStats(t)
		m := flows[pl].window(t, ppsWindow)
		runs, runtime := progStatsSince(t, before)
		t.Logf("%s, %s, with BPF statistics: %.0f packets/s (%d sent, %d received); %d program runs, %v",
			what, pl, m.pps, m.sent, m.received, runs, runtime)
		if pl.rules == noFilter || pl.be == gt.IPTables {
			if runs != 0 {
				t.Errorf("%s, %s: bpfilter's programs ran %d times", what, pl, runs)
			}
			continue
		}
		if runs < uint64(m.received) {
			t.Errorf("%s, %s: %d datagrams arrived, bpfilter's programs ran %d times", what, pl, m.received, runs)
		}
		if runs > 0 {
			res[pl] = float64(runtime.Nanoseconds()) / float64(runs)
		}
	}
	if err := statsOn.Close(); err != nil {
		t.Fatal(err)
	}
	return res
}

// noIPTablesFilter fails t if ip_tables has a filter table in the DUT of
// one of lanes. Once bpfilter is unloaded, its name of the filter table
// goes with it: had iptable_filter made a table in a lane that bpfilter
// served (or in the lane without filter), it would still be there.
func noIPTablesFilter(t *testing.T, lanes []*ppsLane) {
	t.Helper()
	for _, pl := range lanes {
		if hasFilterName(t, pl.l.dut) {
			t.Errorf("%s: ip_tables has a filter table there", pl)
		}
	}
}

// hasFilterName tells whether /proc/net/ip_tables_names of n names the
// filter table: ip_tables' own or, while bpfilter is loaded and served the
// namespace, bpfilter's hookless name for it.
func hasFilterName(t *testing.T, n *ns) bool {
	t.Helper()
	var names []byte
	err := n.do(func() (err error) {
		names, err = os.ReadFile("/proc/thread-self/net/ip_tables_names")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(strings.Fields(string(names)), "filter")
}

// progRuns are the run-time statistics of the SCHED_CLS programs loaded,
// by id.
type progRuns map[ebpf.ProgramID]ebpf.ProgramStats

func progStats(t *testing.T) progRuns {
	t.Helper()
	res := progRuns{}
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return res
		}
		if err != nil {
			t.Fatalf("BPF_PROG_GET_NEXT_ID: %v", err)
		}
		id = next
		prog, err := ebpf.NewProgramFromID(id)
		if errors.Is(err, os.ErrNotExist) {
			continue // gone meanwhile
		}
		if err != nil {
			t.Fatalf("program %d: %v", id, err)
		}
		if prog.Type() == ebpf.SchedCLS {
			st, err := prog.Stats()
			if err != nil {
				t.Fatalf("program %d: %v", id, err)
			}
			res[id] = *st
		}
		prog.Close()
	}
}

// progStatsSince is the runs and run time of the programs since before.
func progStatsSince(t *testing.T, before progRuns) (runs uint64, runtime time.Duration) {
	t.Helper()
	for id, st := range progStats(t) {
		b := before[id]
		runs += st.RunCount - b.RunCount
		runtime += st.Runtime - b.Runtime
	}
	return runs, runtime
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
	key string         // of the counts in pl.sent and pl.recvd
	sc  io.WriteCloser // each Write sends one datagram of the payload given
	rc  *net.UDPConn
	r   *receiver
	tag uint32
}

// flowSpec says how a flow sends. The zero value is TestThroughput's
// flow: one UDP socket in src, connected to the receiver, counted under
// the path's chain.
type flowSpec struct {
	key  string // of the counts in the lane's sent and recvd maps; the chain if empty
	port int    // the receiver's; flowPort if 0
	// sender, if set, makes the flow's sender in pl's src; rc is the
	// receiver's socket, before the receiver starts.
	sender func(t *testing.T, pl *ppsLane, p path, key string, rc *net.UDPConn) io.WriteCloser
}

// openFlow opens the sockets of p through pl and warms the path up
// (neighbours resolved, routes cached): some datagrams must arrive.
func openFlow(t *testing.T, pl *ppsLane, p path) *flow { return openFlowSpec(t, pl, p, flowSpec{}) }

// openFlowSpec is openFlow with a sender of spec.
func openFlowSpec(t *testing.T, pl *ppsLane, p path, spec flowSpec) *flow {
	t.Helper()
	port := spec.port
	if port == 0 {
		port = flowPort
	}
	to := net.JoinHostPort(p.dst, strconv.Itoa(port))
	f := &flow{pl: pl, p: p, key: spec.key, tag: newTag()}
	if f.key == "" {
		f.key = p.chain
	}
	f.rc = udpConn(t, p.rx(pl.l), to, "")
	if err := f.rc.SetReadBuffer(8 << 20); err != nil {
		t.Fatal(err)
	}
	if spec.sender != nil {
		f.sc = spec.sender(t, pl, p, f.key, f.rc)
	} else {
		f.sc = udpConn(t, pl.l.src, srcAddr+":0", to)
	}
	f.r = startReceiver(f.rc, f.tag)
	warm, _ := flood(f.sc, f.tag, 100*time.Millisecond)
	pl.sent[f.key] += warm
	if !gt.Eventually(3*time.Second, func() bool { return f.r.n.Load() > 0 }) {
		t.Fatalf("%s, %s: none of %d warm-up datagrams arrived", pl, p.name, warm)
	}
	if !f.r.quiet(200*time.Millisecond, 10*time.Second) {
		t.Fatal("warm-up datagrams kept coming")
	}
	pl.recvd[f.key] += f.r.n.Load()
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
	f.pl.recvd[f.key] += got
	if got == 0 {
		t.Fatalf("%s, %s: none of %d datagrams arrived", f.pl, f.p.name, sent)
	}
	return ppsResult{pps: float64(got) / d.Seconds(), sent: sent, failed: failed, received: got}
}

func (f *flow) flood(d time.Duration) (sent, failed int64) {
	sent, failed = flood(f.sc, f.tag, d)
	f.pl.sent[f.key] += sent
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
			t.Fatalf("%s: no policy counters in %q", pl, first)
		}
		pkts, _ := strconv.ParseInt(m[1], 10, 64)
		bytes, _ := strconv.ParseInt(m[2], 10, 64)
		if pkts < pl.recvd[p.chain] || pkts > pl.sent[p.chain] || bytes != 64*pkts {
			t.Errorf("%s: %s policy counted %d packets, %d bytes; want %d..%d packets of 64 bytes",
				pl, p.chain, pkts, bytes, pl.recvd[p.chain], pl.sent[p.chain])
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
