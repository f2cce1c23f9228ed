//go:build vmguest

package bench

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// path is how the benchmark datagrams meet the DUT's filter table.
type path struct {
	name  string
	chain string // the chain that judges them
	dst   string // where they go
	rx    func(*topology) *ns
}

var paths = []path{
	{"forwarding", "FORWARD", dstAddr, func(top *topology) *ns { return top.dst }},
	{"local delivery", "INPUT", dutSrcEnd, func(*topology) *ns { return nil }},
}

const (
	ppsWindow = 3 * time.Second // one measurement
	ppsReps   = 5               // measurements per backend, path and rule count: the median counts
)

// ppsRules are the rule counts of the packet-rate benchmark.
var ppsRules = []int{0, 1000}

// missRules is a filter table whose chain holds n rules that the
// benchmark datagrams (UDP to dst, port flowPort) do not match, behind
// policy ACCEPT: "-d dst/32 -p udp --dport P -j DROP" for n other ports.
// ip_tables examines each rule in full (address, protocol, then the udp
// match, which fails on the port).
func missRules(chain, dst string, n int) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "-A %s -d %s/32 -p udp --dport %d -j DROP\n", chain, dst, 20000+i)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// TestThroughput is the packet rate through the DUT with 0 and 1,000 rules
// that match nothing, bpfilter against ip_tables in the same VM: a Go
// sender in src floods 64-byte UDP datagrams for ppsWindow, and the
// receiver counts what arrives. The backends take turns, ppsReps times,
// and the table shows each one's median. After each measurement the
// chain's policy counters must show the datagrams (at 64 bytes each), so
// that both backends are known to have judged every one of them.
func TestThroughput(t *testing.T) {
	top := newTopology(t)
	type key struct {
		path  string
		rules int
		be    gt.Backend
	}
	pps := map[key][]float64{}
	for rep := 0; rep < ppsReps; rep++ {
		order := backends
		if rep%2 == 1 {
			order = []gt.Backend{backends[1], backends[0]}
		}
		for _, be := range order {
			gt.Use(t, be)
			gt.MustRun(t, "modprobe", "xt_tcpudp")
			restore := gt.DisableModprobe(t)
			for _, p := range paths {
				for _, n := range ppsRules {
					m := measurePPS(t, top, p, n)
					t.Logf("rep %d, %s, %s, %d rules: %.0f packets/s (%d sent, %d writes failed, %d received)",
						rep+1, be, p.name, n, m.pps, m.sent, m.failed, m.received)
					k := key{p.name, n, be}
					pps[k] = append(pps[k], m.pps)
				}
			}
			restore()
			gt.Ensure(t, be)
		}
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "packets/s through the DUT, UDP, 64-byte packets, median of %d x %v:\n", ppsReps, ppsWindow)
	tb.WriteString("| path | rules | ip_tables | bpfilter | bpfilter / ip_tables |\n|---|---|---|---|---|\n")
	for _, p := range paths {
		for _, n := range ppsRules {
			ipt, bpf := medianF(pps[key{p.name, n, gt.IPTables}]), medianF(pps[key{p.name, n, gt.Bpfilter}])
			fmt.Fprintf(&tb, "| %s | %s | %s | %s | %.2f |\n", p.name, thousands(int64(n)),
				thousands(int64(ipt)), thousands(int64(bpf)), bpf/ipt)
		}
	}
	t.Log("\n" + tb.String())
}

type ppsResult struct {
	pps                    float64
	sent, failed, received int64
}

// measurePPS sets n missing rules for p and measures the packet rate.
func measurePPS(t *testing.T, top *topology, p path, n int) ppsResult {
	t.Helper()
	if out, err := gt.Restore(missRules(p.chain, p.dst, n)); err != nil {
		t.Fatalf("restore: %v: %s", err, out)
	}
	to := net.JoinHostPort(p.dst, strconv.Itoa(flowPort))
	rc := udpConn(t, p.rx(top), to, "")
	defer rc.Close()
	if err := rc.SetReadBuffer(8 << 20); err != nil {
		t.Fatal(err)
	}
	sc := udpConn(t, top.src, srcAddr+":0", to)
	defer sc.Close()
	tag := newTag()
	r := startReceiver(rc, tag)
	defer r.close(t)

	// Warm-up (neighbours resolved, routes cached): some must arrive.
	warm, _ := flood(sc, tag, 100*time.Millisecond)
	if !gt.Eventually(3*time.Second, func() bool { return r.n.Load() > 0 }) {
		t.Fatalf("%s, %d rules: none of %d warm-up datagrams arrived", p.name, n, warm)
	}
	if !r.quiet(200*time.Millisecond, 10*time.Second) {
		t.Fatal("warm-up datagrams kept coming")
	}
	before := r.n.Load()
	sent, failed := flood(sc, tag, ppsWindow)
	if !r.quiet(300*time.Millisecond, 30*time.Second) {
		t.Fatal("datagrams kept coming 30 s after the sender stopped")
	}
	got := r.n.Load() - before
	if got == 0 {
		t.Fatalf("%s, %d rules: none of %d datagrams arrived", p.name, n, sent)
	}
	pkts, bytes := policyCounters(t, p.chain)
	if pkts < before+got || pkts > warm+sent || bytes != 64*pkts {
		t.Fatalf("%s, %d rules: %s policy counters %d packets %d bytes; want %d..%d packets of 64 bytes",
			p.name, n, p.chain, pkts, bytes, before+got, warm+sent)
	}
	return ppsResult{pps: float64(got) / ppsWindow.Seconds(), sent: sent, failed: failed, received: got}
}

var policyRE = regexp.MustCompile(`\(policy ACCEPT (\d+) packets, (\d+) bytes\)`)

// policyCounters reads chain's policy counters.
func policyCounters(t *testing.T, chain string) (pkts, bytes int64) {
	t.Helper()
	out := gt.MustRun(t, "iptables-legacy", "-t", "filter", "-L", chain, "-v", "-x", "-n")
	m := policyRE.FindStringSubmatch(out)
	if m == nil {
		first, _, _ := strings.Cut(out, "\n")
		t.Fatalf("no policy counters in %q", first)
	}
	pkts, _ = strconv.ParseInt(m[1], 10, 64)
	bytes, _ = strconv.ParseInt(m[2], 10, 64)
	return pkts, bytes
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
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
