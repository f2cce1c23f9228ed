//go:build vmguest

package kmodpaths

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

const (
	hammerThreads = 4
	// callBound is how long any one call may take: a call waits at most
	// for one umh start, one replace or one shutdown of the umh.
	callBound = 30 * time.Second
)

// finit loads ko by finit_module(2) and returns its errno.
func finit(t *testing.T, ko string) syscall.Errno {
	t.Helper()
	f, err := os.Open(ko)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err == nil {
		return 0
	}
	e, ok := err.(syscall.Errno)
	if !ok {
		t.Fatalf("finit_module %s: %v", ko, err)
	}
	return e
}

var initFailRe = regexp.MustCompile(`^bpfilter: test build: init fails now, the sockopt hook published$`)

// TestInitFailsAfterPublish: bpfilter-initfail.ko fails its init right
// after it started the umh and published the sockopt hook, through the
// same error path as a real failure there. With four threads calling
// GET_INFO and ADD_COUNTERS all along, insmod fails with the injected
// errno, three times: no umh is left, the module is gone, every call
// returns (those that came in while the hook was published got the umh's
// answer, all others the kernel's ENOPROTOOPT, as without bpfilter; with
// the in-tree stub removed, request_module finds no bpfilter to load), no
// BPF program of the failed module's umh stays loaded (its namespaces'
// hooks and programs went with the failed init), and a good module loads
// afterwards.
func TestInitFailsAfterPublish(t *testing.T) {
	fresh(t)
	progsBefore := progIDs(t)
	h := startHammer(t, hammerThreads, unloaded)
	h.waitCalls(t, 5, callBound)
	for i := 0; i < 3; i++ {
		k := gt.NewKmsg(t)
		h.enter(loading)
		start := time.Now()
		errno := finit(t, gt.InitFailKO)
		took := time.Since(start)
		h.enter(unloaded)
		if errno == 0 {
			gt.Unload(t)
			t.Fatalf("insmod of the initfail module succeeded")
		}
		if errno != gt.InitFailErrno {
			t.Fatalf("insmod of the initfail module failed with %v, want %v (the injected errno)", errno, gt.InitFailErrno)
		}
		m := k.Wait(t, gt.LoadedRe, 5*time.Second)
		k.Wait(t, initFailRe, 5*time.Second)
		pid, _ := strconv.Atoi(m[1])
		t.Logf("try %d: insmod failed with %v after %v; its umh was pid %d", i, errno, took.Round(time.Millisecond), pid)
		if gt.Loaded("bpfilter") {
			t.Fatal("bpfilter is loaded after its init failed")
		}
		if p, ok := gt.ReadProc(pid); ok {
			t.Fatalf("the failed module's umh %d is still there: %+v", pid, p)
		}
		gt.NoUmh(t)
		var left []string
		if !gt.Eventually(5*time.Second, func() bool {
			left = left[:0]
			for id := range progIDs(t) {
				if !progsBefore[id] {
					left = append(left, strconv.Itoa(int(id)))
				}
			}
			return len(left) == 0
		}) {
			t.Errorf("try %d: BPF programs left after the failed init: %v", i, left)
		}
		if ls := k.Grep(gt.StartedRe); len(ls) > 0 {
			t.Errorf("the initfail module said it started: %q", ls)
		}
		noTrouble(t, k)
		// Calls go on without bpfilter.
		h.waitCalls(t, 3, callBound)
	}
	h.stopHammer(t, callBound)
	t.Logf("calls that reached the umh of a failing module: %d", h.count(loading, 0))
	if n := h.count(unloaded, int(syscall.ENOPROTOOPT)); n == 0 {
		t.Error("no call got ENOPROTOOPT without bpfilter")
	}
	gt.NoUmh(t)

	// A good module loads afterwards, and its umh answers.
	load(t, gt.GoodKO)
	fd, err := gt.RawSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	n, err := consistent(fd)
	if err != nil {
		t.Fatal(err)
	}
	if n != initialEntries {
		t.Fatalf("a fresh filter table has %d entries, want %d", n, initialEntries)
	}
	if err := addCounters(fd, initialEntries); err != nil {
		t.Fatalf("ADD_COUNTERS of a fresh table: %v", err)
	}
}

// TestRmmodDuringCalls: four threads call GET_INFO and ADD_COUNTERS
// without pause while the module is loaded and unloaded, four times.
// rmmod completes, every call returns within callBound with the umh's
// answer or, once the module is going, ENOPROTOOPT; no umh is left after
// each rmmod.
func TestRmmodDuringCalls(t *testing.T) {
	fresh(t)
	h := startHammer(t, hammerThreads, unloaded)
	for i := 0; i < 4; i++ {
		k := gt.NewKmsg(t)
		h.enter(loading)
		gt.MustRun(t, "insmod", gt.GoodKO)
		h.enter(loaded)
		m := k.Wait(t, gt.LoadedRe, 5*time.Second)
		k.Wait(t, gt.StartedRe, 5*time.Second)
		pid, _ := strconv.Atoi(m[1])
		h.waitCalls(t, 5, callBound)

		h.enter(unloading)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), callBound)
		out, err := exec.CommandContext(ctx, "rmmod", "bpfilter").CombinedOutput()
		cancel()
		took := time.Since(start)
		h.enter(unloaded)
		if err != nil {
			t.Fatalf("cycle %d: rmmod after %v: %v\n%s\nin flight:\n%v", i, took, err, out, h.stuck(0))
		}
		t.Logf("cycle %d: rmmod took %v", i, took.Round(time.Millisecond))
		if gt.Loaded("bpfilter") {
			t.Fatalf("cycle %d: bpfilter still loaded after rmmod", i)
		}
		k.Wait(t, gt.StoppedRe, 5*time.Second)
		if p, ok := gt.ReadProc(pid); ok {
			t.Fatalf("cycle %d: umh %d still there after rmmod: %+v", i, pid, p)
		}
		gt.NoUmh(t)
		noTrouble(t, k)
		h.waitCalls(t, 3, callBound)
	}
	h.stopHammer(t, callBound)
	if n := h.count(loaded, 0); n == 0 {
		t.Error("no call reached the umh")
	}
	if n := h.count(unloaded, int(syscall.ENOPROTOOPT)); n == 0 {
		t.Error("no call got ENOPROTOOPT without bpfilter")
	}
}
