package enforce

import (
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// bigTable is n rules "-s 10.x.y.z/32 -j DROP" in INPUT.
func bigTable(t *testing.T, n int) *ipt.Table {
	t.Helper()
	b := ipt.NewFilterBuilder()
	for i := 0; i < n; i++ {
		r := ipt.RuleSpec{IP: ipt.IP{Src: [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)},
			SrcMask: [4]byte{255, 255, 255, 255}}, Jump: "DROP"}
		if err := b.Append("INPUT", r); err != nil {
			t.Fatal(err)
		}
	}
	return translate(t, b)
}

// TestInstallLarge: 10,000 rules install, count, keep their state and
// are taken over; the times go to the test log.
func TestInstallLarge(t *testing.T) {
	needBPF(t)
	k := newFake(t)
	dir := t.TempDir()
	e, _ := newEnforcer(t, dir, k)
	tb := bigTable(t, 10000)
	start := time.Now()
	if _, err := e.Install(1, tb); err != nil {
		t.Fatal(err)
	}
	installed := time.Since(start)
	start = time.Now()
	c := e.Counted(1)
	counted := time.Since(start)
	if len(c) != tb.NumEntries() {
		t.Fatalf("counted %d of %d", len(c), tb.NumEntries())
	}
	start = time.Now()
	e.Changed(1, tb, make([]ipt.Counters, tb.NumEntries()))
	saved := time.Since(start)
	e.Abandon()
	e2, log := newEnforcer(t, dir, k)
	start = time.Now()
	n := 0
	e2.Resume(func(uint64, *ipt.Table, []ipt.Counters) error { n++; return nil })
	resumed := time.Since(start)
	if n != 1 || len(e2.Counted(1)) != tb.NumEntries() {
		t.Fatalf("not resumed; log:\n%s", log)
	}
	t.Logf("10,000 rules: install %v, read counters %v, save state %v, resume %v", installed, counted, saved, resumed)
}
