//go:build linux

package gt

import (
	"errors"
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
// the in-tree bpfilter stub (see RemoveStub). With bpfilter, ip_tables is
// loaded as well (but not iptable_filter): a call that bpfilter hands on
// (a table it does not serve) then gets ip_tables' answer, as it would on
// a real system.
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
		MustRun(t, "modprobe", "ip_tables")
	}
	Ensure(t, b)
}

// Check tells whether b is still the one that answers for the filter
// table: a bpfilter that fell back to ip_tables would make a comparison
// meaningless. ip_tables itself may be loaded (libxtables modprobes it
// when /proc/net/ip_tables_names is missing), but only a fallback for the
// filter table loads iptable_filter.
func Check(b Backend) error {
	switch {
	case b == Bpfilter && Loaded("iptable_filter"):
		return errors.New("iptable_filter got loaded while bpfilter was to answer: bpfilter fell back to ip_tables")
	case b == Bpfilter && !Loaded("bpfilter"):
		return errors.New("bpfilter is not loaded")
	case b == IPTables && !Loaded("iptable_filter"):
		return errors.New("iptable_filter is not loaded for the reference run")
	case b == IPTables && Loaded("bpfilter"):
		return errors.New("bpfilter is loaded during the reference run")
	}
	return nil
}

// Ensure fails t unless Check(b) holds.
func Ensure(t testing.TB, b Backend) {
	t.Helper()
	if err := Check(b); err != nil {
		t.Fatal(err)
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
// removes the in-tree stub (RemoveStub), then runs the tests (RunTests).
func MainWithoutStub(m *testing.M) {
	if err := RemoveStub(ReleaseOrExit()); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	os.Exit(RunTests(m))
}
