package enforce

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/bpfilter/bpfilter/umh/internal/klog"
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
	ino, _ := privateNetns(t)
	var log bytes.Buffer
	bpffs := t.TempDir()
	t.Cleanup(func() { unix.Unmount(bpffs, unix.MNT_DETACH) })
	e, err := New(klog.New(&log), t.TempDir(), bpffs)
	if err != nil {
		t.Fatal(err)
	}
	tb := bigTable(t, 10000)
	start := time.Now()
	if _, err := e.Install(ino, tb); err != nil {
		t.Fatal(err)
	}
	installed := time.Since(start)
	start = time.Now()
	c := e.Counted(ino)
	counted := time.Since(start)
	if len(c) != tb.NumEntries() {
		t.Fatalf("counted %d of %d", len(c), tb.NumEntries())
	}
	start = time.Now()
	e.Changed(ino, tb, make([]ipt.Counters, tb.NumEntries()))
	saved := time.Since(start)
	t.Logf("10,000 rules: install %v, read counters %v, save state %v", installed, counted, saved)
	if err := e.Shutdown(); err != nil {
		t.Fatal(err)
	}
}
