//go:build vmguest

package badinput

import (
	"fmt"
	"regexp"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// TestSignalDuringCall: a signal that reaches the calling thread while its
// iptables call waits for the answer must change nothing. ip_tables never
// waits interruptibly there; the calls are repeated against both backends
// while another thread sends the caller SIGURG (which the Go runtime
// takes and ignores, as a C program would take a SIGCHLD or a SIGALRM
// with a handler) as fast as it can. Every call must succeed, bpfilter's
// umh must stay the same process, and the table must stay as it was. 100
// rounds of calls, a quarter of that on the debug kernel (gt.Slowdown).
func TestSignalDuringCall(t *testing.T) {
	defer gt.Use(t, gt.IPTables)
	for _, b := range backends {
		t.Run(b.String(), func(t *testing.T) {
			gt.Use(t, b)
			restoreTable(t, knownTable)
			pid := 0
			if b == gt.Bpfilter {
				pid = gt.UmhPid(t)
			}
			k := gt.NewKmsg(t)
			calls, failed, first := signalledCalls(t, 100/gt.Slowdown(t))
			if ls := k.Grep(regexp.MustCompile(`^bpfilter: (read from|write to) umh failed`)); len(ls) > 0 {
				t.Errorf("the module gave up on the umh %d times; the first: %q", len(ls), ls[0])
			}
			t.Logf("%d calls under signals, %d failed", calls, failed)
			if failed > 0 {
				t.Errorf("%d of %d calls failed while the caller got signals; the first: %s", failed, calls, first)
			}
			if b == gt.Bpfilter {
				if err := sameUmh(pid); err != nil {
					t.Errorf("signals to the caller cost the umh its life, and every namespace its table: %v", err)
				}
			}
			if out := gt.MustRun(t, "iptables-legacy", "-S"); out != knownRules {
				t.Errorf("after the calls, iptables-legacy -S:\n%s\nwant:\n%s", out, knownRules)
			}
			gt.Ensure(t, b)
		})
	}
}

// signalledCalls makes n rounds of GET_INFO, GET_ENTRIES and a replace
// with the table's own blob on a locked thread while another goroutine
// sends that thread SIGURG in a loop.
func signalledCalls(t *testing.T, n int) (calls, failed int, first string) {
	t.Helper()
	type result struct {
		calls, failed int
		first         string
		err           error
	}
	tidc := make(chan int, 1)
	resc := make(chan result, 1)
	var stop atomic.Bool
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var r result
		defer func() { resc <- r }()
		fd, err := gt.RawSocket()
		if err != nil {
			r.err = err
			close(tidc)
			return
		}
		defer unix.Close(fd)
		ctr, err := mapping(1<<16, unix.PROT_READ|unix.PROT_WRITE)
		if err != nil {
			r.err = err
			close(tidc)
			return
		}
		defer ctr.free()
		s, err := getSnap(fd)
		if err != nil {
			r.err = err
			close(tidc)
			return
		}
		tbl, err := parseTable(s)
		if err != nil {
			r.err = err
			close(tidc)
			return
		}
		blob := tbl.replaceOf(ctr.addr()).bytes()
		// Ready: the signals start now.
		tidc <- unix.Gettid()
		note := func(what string, err error) {
			r.calls++
			if err != nil {
				r.failed++
				if r.first == "" {
					r.first = fmt.Sprintf("call %d, %s: %v", r.calls, what, err)
				}
			}
		}
		for i := 0; i < n; i++ {
			_, err := getSnap(fd)
			note("GET_INFO+GET_ENTRIES", err)
			e, err := send(fd, gt.SetReplace, withData(blob))
			if err == nil && e != 0 {
				err = e
			}
			note("SET_REPLACE of the table's own blob", err)
		}
	}()
	tid, ready := <-tidc
	var sent atomic.Int64
	var senders sync.WaitGroup
	if ready {
		pid := unix.Getpid()
		senders.Add(1)
		go func() {
			defer senders.Done()
			for !stop.Load() {
				if unix.Tgkill(pid, tid, unix.SIGURG) != nil {
					return
				}
				sent.Add(1)
				time.Sleep(100 * time.Microsecond)
			}
		}()
	}
	r := <-resc
	stop.Store(true)
	senders.Wait()
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("SIGURG sent to the calling thread %d times", sent.Load())
	return r.calls, r.failed, r.first
}
