//go:build linux

// Package gt holds what the guest-side VM tests share: running commands,
// loading the module, reading the kernel log, finding the umh, and making
// raw iptables sockopt calls.
package gt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ModDir is where the host puts bpfilter.ko and friends (vm.Populate).
const ModDir = "/mount/9p/gotestdata/modules"

// Module paths in the guest.
var (
	GoodKO       = filepath.Join(ModDir, "bpfilter.ko")
	HealthFailKO = filepath.Join(ModDir, "bpfilter-healthfail.ko")
	InitFailKO   = filepath.Join(ModDir, "bpfilter-initfail.ko") // see InitFailErrno
	UmhBinary    = filepath.Join(ModDir, "bpfilter_umh")
)

// InitFailErrno is what init of InitFailKO fails with: that build
// (kmod/main.c, BPFILTER_TEST_INITFAIL) fails right after publishing the
// sockopt hook, through the real error path.
const InitFailErrno = syscall.ECANCELED

// Run runs a command and returns its combined output and error.
func Run(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// MustRun runs a command and fails t if it fails.
func MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := Run(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// Loaded tells whether module name is loaded.
func Loaded(name string) bool {
	_, err := os.Stat("/sys/module/" + name + "/initstate")
	return err == nil
}

// Insmod loads ko and makes sure it is unloaded when t ends.
func Insmod(t testing.TB, ko string) {
	t.Helper()
	MustRun(t, "insmod", ko)
	t.Cleanup(func() { Unload(t) })
}

// Unload removes bpfilter if it is loaded, and fails t if that fails.
func Unload(t testing.TB) {
	t.Helper()
	if !Loaded("bpfilter") {
		return
	}
	if out, err := Run("rmmod", "bpfilter"); err != nil {
		t.Errorf("rmmod bpfilter: %v\n%s", err, out)
	}
}

// Release is the guest kernel's release.
func Release(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ModDir, "release"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// Slowdown is how many times slower than the test kernel this guest's
// kernel runs the tests (vm.Config.Slowdown, written by vm.Populate: 4 on
// the debug kernel), for a test whose rounds exist to reach a path many
// times rather than to count: it can do fewer there, where the point is
// what the kernel's detectors say.
func Slowdown(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ModDir, "slowdown"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 1 {
		t.Fatalf("slowdown %q: not a factor", b)
	}
	return n
}

// Proc is a process seen in /proc.
type Proc struct {
	Pid   int
	Comm  string
	State string // R, S, Z, ...
	PPid  int
}

// ReadProc returns pid's entry, or false if there is no such process.
func ReadProc(pid int) (Proc, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Proc{}, false
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return Proc{}, false
	}
	f := strings.Fields(s[close+1:])
	if len(f) < 2 {
		return Proc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return Proc{Pid: pid, Comm: s[open+1 : close], State: f[0], PPid: ppid}, true
}

// Procs returns every process whose comm is comm, zombies included.
func Procs(comm string) []Proc {
	ents, _ := os.ReadDir("/proc")
	var ps []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := ReadProc(pid); ok && p.Comm == comm {
			ps = append(ps, p)
		}
	}
	return ps
}

// LiveUmhs are the bpfilter_umh processes that are not zombies.
func LiveUmhs() []Proc {
	var ps []Proc
	for _, p := range Procs("bpfilter_umh") {
		if p.State != "Z" {
			ps = append(ps, p)
		}
	}
	return ps
}

// UmhPid is the pid of the one live bpfilter_umh; fails t unless there is
// exactly one.
func UmhPid(t testing.TB) int {
	t.Helper()
	ps := LiveUmhs()
	if len(ps) != 1 {
		t.Fatalf("want one live bpfilter_umh, have %+v (all: %+v)", ps, Procs("bpfilter_umh"))
	}
	return ps[0].Pid
}

// Eventually polls cond every 20 ms until it holds or timeout passes.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NoUmh fails t unless no bpfilter_umh process (zombie or not) is left.
func NoUmh(t testing.TB) {
	t.Helper()
	var left []Proc
	if !Eventually(5*time.Second, func() bool { left = Procs("bpfilter_umh"); return len(left) == 0 }) {
		t.Fatalf("bpfilter_umh processes left behind: %+v", left)
	}
}

// ErrnoOf returns the errno in err, 0 for nil, -1 for an error without.
func ErrnoOf(err error) int {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return int(e)
	}
	return -1
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// ReleaseOrExit is Release for TestMain, which has no t.
func ReleaseOrExit() string {
	b, err := os.ReadFile(filepath.Join(ModDir, "release"))
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	return strings.TrimSpace(string(b))
}
