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

const (
	enforceRulesN  = 10000
	enforceReps    = 7
	probeInterval  = time.Millisecond
	probeQuiet     = 500 * time.Millisecond // no probe for this long: they are dropped
	probesAfter    = 20                     // and at least this many were sent meanwhile
	enforceTimeout = 30 * time.Second
)

// enforceRules is a filter table of n FORWARD rules of which only the last
// one matches the probes (UDP from src to dst, port probePort) and drops
// them; the others are those of the restore benchmark.
func enforceRules(n int) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for i := 0; i < n-1; i++ {
		fmt.Fprintf(&b, "-A FORWARD -s 10.%d.%d.0/24 -p tcp --dport %d -j DROP\n", i/250, i%250, 1+i%60000)
	}
	fmt.Fprintf(&b, "-A FORWARD -s %s/32 -d %s/32 -p udp --dport %d -j DROP\n", srcAddr, dstAddr, probePort)
	b.WriteString("COMMIT\n")
	return b.String()
}

// TestRestoreToEnforcement is the time from the start of
// iptables-legacy-restore of 10,000 rules (over an empty table) until the
// rules are in force, bpfilter against ip_tables in the same VM. Probes
// go from src through the DUT to dst every probeInterval; only the last
// of the new rules drops them. Two times, from the start of the restore:
// until the command returns, and until the first probe that was dropped
// was sent (the probe after the last one that arrived; that none arrived
// after it, for probeQuiet and at least probesAfter probes, confirms the
// drop). The last rule's counter must count exactly the dropped probes.
// The backends take turns, enforceReps times; the table shows the
// medians of the times and of the reps' ratios.
func TestRestoreToEnforcement(t *testing.T) {
	l := newLane(t)
	in := enforceRules(enforceRulesN)
	type times struct{ restore, enforce []time.Duration }
	res := map[gt.Backend]*times{gt.IPTables: {}, gt.Bpfilter: {}}
	var restoreRatios, enforceRatios []float64 // bpfilter / ip_tables, per rep
	for rep := 0; rep < enforceReps; rep++ {
		order := backends
		if rep%2 == 1 {
			order = []gt.Backend{backends[1], backends[0]}
		}
		for _, be := range order {
			gt.Use(t, be)
			gt.MustRun(t, "modprobe", "xt_tcpudp")
			restore := gt.DisableModprobe(t)
			r, e := enforceOnce(t, l, in)
			restore()
			gt.Ensure(t, be)
			t.Logf("rep %d, %s: restore returned after %v, probes dropped from %v", rep+1, be,
				r.Round(time.Millisecond), e.Round(time.Millisecond))
			res[be].restore = append(res[be].restore, r)
			res[be].enforce = append(res[be].enforce, e)
		}
		at := func(ds []time.Duration) float64 { return float64(ds[rep]) }
		restoreRatios = append(restoreRatios, at(res[gt.Bpfilter].restore)/at(res[gt.IPTables].restore))
		enforceRatios = append(enforceRatios, at(res[gt.Bpfilter].enforce)/at(res[gt.IPTables].enforce))
	}
	ms := func(d time.Duration) string { return thousands(d.Round(time.Millisecond).Milliseconds()) }
	// median (min..max)
	spread := func(ds []time.Duration) string {
		f := make([]float64, len(ds))
		for i, d := range ds {
			f[i] = float64(d)
		}
		return fmt.Sprintf("%s ms (%s..%s)", ms(time.Duration(medianF(f))), ms(slices.Min(ds)), ms(slices.Max(ds)))
	}
	ratio := func(r []float64) string {
		return fmt.Sprintf("%.2f (%.2f..%.2f)", medianF(r), slices.Min(r), slices.Max(r))
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "iptables-legacy-restore of %s rules over an empty table, from its start; median (min..max) of %d:\n",
		thousands(enforceRulesN), enforceReps)
	tb.WriteString("| until | ip_tables | bpfilter | bpfilter / ip_tables |\n|---|---|---|---|\n")
	fmt.Fprintf(&tb, "| the command returns | %s | %s | %s |\n",
		spread(res[gt.IPTables].restore), spread(res[gt.Bpfilter].restore), ratio(restoreRatios))
	fmt.Fprintf(&tb, "| the probe is dropped | %s | %s | %s |\n",
		spread(res[gt.IPTables].enforce), spread(res[gt.Bpfilter].enforce), ratio(enforceRatios))
	t.Log("\n" + tb.String())
}

// enforceOnce empties the table, checks that probes pass, restores in and
// returns how long the command took and when the probes began to drop;
// it leaves the table empty.
func enforceOnce(t *testing.T, l *lane, in string) (restore, enforce time.Duration) {
	t.Helper()
	l.dut.restore(t, gt.EmptyFilter)
	to := net.JoinHostPort(dstAddr, strconv.Itoa(probePort))
	rc := udpConn(t, l.dst, to, "")
	defer rc.Close()
	sc := udpConn(t, l.src, srcAddr+":0", to)
	defer sc.Close()
	tag := newTag()
	r := startReceiver(rc, tag)
	defer r.close(t)
	p := startProber(sc, tag, probeInterval)
	defer func() {
		select {
		case <-p.done:
		default:
			p.halt()
		}
	}()
	if !gt.Eventually(5*time.Second, func() bool { return r.n.Load() >= 5 }) {
		t.Fatalf("probes do not pass the empty table (%d of %d arrived)", r.n.Load(), p.count())
	}

	start := time.Now()
	out, err := l.dut.run(in, "iptables-legacy-restore")
	restore = time.Since(start)
	if err != nil {
		t.Fatalf("restore %d rules: %v: %s", enforceRulesN, err, out)
	}
	dropped := gt.Eventually(enforceTimeout, func() bool {
		last := time.Unix(0, r.last.Load())
		return time.Since(last) >= probeQuiet && int64(p.count())-(r.seq.Load()+1) >= probesAfter
	})
	sent, fails := p.halt()
	if !dropped {
		t.Fatalf("probes still pass %v after the restore returned (%d sent, %d arrived)", enforceTimeout, len(sent), r.n.Load())
	}
	first := int(r.seq.Load() + 1) // the first probe that did not arrive
	enforce = sent[first].Sub(start)
	if enforce < 0 {
		t.Fatalf("a probe sent %v before the restore started was dropped (the empty table let them pass)", -enforce)
	}
	if fails > 0 {
		t.Logf("%d probe writes failed", fails)
	}
	// Every probe from the first dropped one on is the last rule's.
	want := int64(len(sent) - first)
	if got := lastRulePackets(t, l.dut, "FORWARD"); got != want {
		t.Fatalf("the last rule counted %d packets; %d probes were dropped (%d sent, first dropped: #%d)",
			got, want, len(sent), first)
	}
	// Emptied, an ip_tables table no longer pins iptable_filter.
	l.dut.restore(t, gt.EmptyFilter)
	return restore, enforce
}

var ruleCountersRE = regexp.MustCompile(`^\s*(\d+)\s+(\d+)\s+DROP\b`)

// lastRulePackets reads the packet counter of chain's last rule.
func lastRulePackets(t *testing.T, dut *ns, chain string) int64 {
	t.Helper()
	out := strings.TrimRight(dut.mustRun(t, "", "iptables-legacy", "-t", "filter", "-L", chain, "-v", "-x", "-n"), "\n")
	last := out[strings.LastIndexByte(out, '\n')+1:]
	m := ruleCountersRE.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("no counters in the last rule of %s: %q", chain, last)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}
