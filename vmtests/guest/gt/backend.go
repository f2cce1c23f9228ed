//go:build linux

package gt

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Backend is who answers iptables for the filter table.
type Backend int

// The two backends a differential test compares.
const (
	IPTables Backend = iota // the kernel's ip_tables with iptable_filter
	Bpfilter                // bpfilter.ko and its umh
)

func (b Backend) String() string {
	if b == Bpfilter {
		return "bpfilter"
	}
	return "ip_tables"
}

// EmptyFilter is an iptables-restore input for an empty filter table.
const EmptyFilter = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"

// Restore runs iptables-legacy-restore with input and returns its output.
func Restore(input string, args ...string) (string, error) {
	cmd := exec.Command("iptables-legacy-restore", args...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Use makes b answer for a fresh filter table. The guest must not hold
// the in-tree bpfilter stub (see RemoveStub).
func Use(t testing.TB, b Backend) {
	t.Helper()
	if Loaded("bpfilter") {
		MustRun(t, "rmmod", "bpfilter")
	}
	if Loaded("iptable_filter") {
		// ip_tables pins iptable_filter while it holds more than
		// the initial entries: empty it first.
		if out, err := Restore(EmptyFilter); err != nil {
			t.Fatalf("emptying the filter table: %v: %s", err, out)
		}
		MustRun(t, "rmmod", "iptable_filter")
	}
	if Loaded("ip_tables") {
		MustRun(t, "rmmod", "ip_tables")
	}
	switch b {
	case IPTables:
		MustRun(t, "modprobe", "iptable_filter")
	case Bpfilter:
		MustRun(t, "insmod", GoodKO)
	}
}

// Ensure fails t if the backend that answered was not b: a bpfilter that
// fell back to ip_tables would make a comparison meaningless. iptables
// itself modprobes ip_tables (libxtables does when
// /proc/net/ip_tables_names is missing), but only a fallback to ip_tables
// for the filter table loads iptable_filter.
func Ensure(t testing.TB, b Backend) {
	t.Helper()
	if b == Bpfilter && Loaded("iptable_filter") {
		t.Fatal("iptable_filter got loaded while bpfilter was to answer: bpfilter fell back")
	}
	if b == IPTables && !Loaded("iptable_filter") {
		t.Fatal("iptable_filter is not loaded for the reference run")
	}
}

// RemoveStub deletes the kernel's in-tree bpfilter stub from this guest's
// /lib/modules: otherwise every iptables call made while ip_tables is the
// reference would load it on demand (request_module), and it would stand
// in the way of insmod of ours.
func RemoveStub(release string) error {
	if err := removeIfExists("/lib/modules/" + release + "/kernel/net/bpfilter/bpfilter.ko"); err != nil {
		return err
	}
	if out, err := Run("depmod", "-a", release); err != nil {
		return &exec.Error{Name: "depmod: " + out, Err: err}
	}
	return nil
}

// NoModprobe makes the kernel's request_module fail at once until t ends,
// by emptying /proc/sys/kernel/modprobe. Without bpfilter loaded, every
// iptables sockopt call first asks for the bpfilter module (the hook in
// net/ipv4/bpfilter/sockopt.c), which forks modprobe: a cost that a
// kernel without CONFIG_BPFILTER does not pay, and that would make
// ip_tables look slower than it is. Load what the commands need first.
func NoModprobe(t testing.TB) {
	t.Helper()
	t.Cleanup(DisableModprobe(t))
}

// DisableModprobe is NoModprobe until the returned function is called.
func DisableModprobe(t testing.TB) (restore func()) {
	t.Helper()
	const file = "/proc/sys/kernel/modprobe"
	old, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(file, old, 0o644); err != nil {
			t.Errorf("restore %s: %v", file, err)
		}
	}
}

// Extensions are the xt modules the iptables tests use, for loading them
// before DisableModprobe.
var Extensions = []string{"xt_tcpudp", "xt_multiport", "xt_iprange", "xt_comment", "xt_mark"}

// MainWithoutStub is a TestMain for packages that switch backends: it
// removes the in-tree stub (RemoveStub), then runs the tests.
func MainWithoutStub(m *testing.M) {
	if err := RemoveStub(ReleaseOrExit()); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
