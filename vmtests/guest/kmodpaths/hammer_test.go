//go:build vmguest

package kmodpaths

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// A phase is what the test is doing to the module meanwhile; every call
// of a hammer is judged by the phases it overlapped.
type phase int

const (
	unloaded  phase = iota // no bpfilter: the kernel's fallback answers
	loading                // insmod runs
	loaded                 // bpfilter is live: the umh answers
	unloading              // rmmod runs
)

func (p phase) String() string {
	return [...]string{"unloaded", "loading", "loaded", "unloading"}[p]
}

// initialEntries is the number of entries of a fresh filter table (three
// policies and the final ERROR entry): the hammer's ADD_COUNTERS carries
// that many counters, which the umh accepts.
const initialEntries = 4

// call is one sockopt call of a hammer thread.
type call struct {
	set        bool // ADD_COUNTERS, else GET_INFO
	start, end time.Time
	errno      int
}

func (c call) String() string {
	op := "GET_INFO"
	if c.set {
		op = "SET_ADD_COUNTERS"
	}
	return fmt.Sprintf("%s for %v: %s", op, c.end.Sub(c.start).Round(time.Millisecond), errnoName(c.errno))
}

// hammer is a few threads, each looping GET_INFO and ADD_COUNTERS of the
// filter table on a raw socket of its own, while the test loads and
// unloads the module.
type hammer struct {
	stop   atomic.Bool
	wg     sync.WaitGroup
	calls  [][]call       // per thread
	tids   []int          // per thread
	inCall []atomic.Int64 // per thread: start of the call in flight (unix ns), 0 if none
	done   []atomic.Int64 // per thread: calls made

	mu     sync.Mutex
	phases []phaseMark
}

type phaseMark struct {
	at time.Time
	p  phase
}

// startHammer starts n threads calling until stopHammer; the module is in
// phase p.
func startHammer(t *testing.T, n int, p phase) *hammer {
	t.Helper()
	h := &hammer{calls: make([][]call, n), tids: make([]int, n), inCall: make([]atomic.Int64, n), done: make([]atomic.Int64, n)}
	h.phases = []phaseMark{{time.Now(), p}}
	ready := make(chan error, n)
	for i := 0; i < n; i++ {
		h.wg.Add(1)
		go func(i int) {
			defer h.wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			fd, err := gt.RawSocket()
			if err != nil {
				ready <- err
				return
			}
			defer unix.Close(fd)
			h.tids[i] = unix.Gettid()
			ready <- nil
			for j := 0; !h.stop.Load(); j++ {
				c := call{set: (i+j)%2 == 1, start: time.Now()}
				h.inCall[i].Store(c.start.UnixNano())
				var err error
				if c.set {
					err = addCounters(fd, initialEntries)
				} else {
					_, err = getInfo(fd)
				}
				c.end = time.Now()
				h.inCall[i].Store(0)
				c.errno = gt.ErrnoOf(err)
				h.calls[i] = append(h.calls[i], c)
				h.done[i].Add(1)
			}
		}(i)
	}
	for i := 0; i < n; i++ {
		if err := <-ready; err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// enter records that the module enters phase p now.
func (h *hammer) enter(p phase) {
	h.mu.Lock()
	h.phases = append(h.phases, phaseMark{time.Now(), p})
	h.mu.Unlock()
}

// stuck describes the calls in flight for longer than bound, with what
// their threads wait in.
func (h *hammer) stuck(bound time.Duration) []string {
	var out []string
	for i := range h.inCall {
		s := h.inCall[i].Load()
		if s == 0 || time.Since(time.Unix(0, s)) < bound {
			continue
		}
		wchan, _ := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/wchan", h.tids[i]))
		stack, _ := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stack", h.tids[i]))
		out = append(out, fmt.Sprintf("thread %d (tid %d): in a call for %v, waiting in %q\n%s",
			i, h.tids[i], time.Since(time.Unix(0, s)).Round(time.Millisecond), wchan, stack))
	}
	return out
}

// waitCalls waits until each thread has made n more calls, failing t
// after timeout.
func (h *hammer) waitCalls(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	want := make([]int64, len(h.done))
	for i := range h.done {
		want[i] = h.done[i].Load() + n
	}
	ok := gt.Eventually(timeout, func() bool {
		for i := range h.done {
			if h.done[i].Load() < want[i] {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("the threads did not make %d calls each within %v; in flight:\n%s", n, timeout, strings.Join(h.stuck(0), "\n"))
	}
}

// stopHammer stops the threads, waits for them (every call must return
// within bound), and checks every answer: a call that overlapped only
// phase loaded must get the umh's 0, one that overlapped only phase
// unloaded ENOPROTOOPT, any other 0 or ENOPROTOOPT. No call may take
// longer than bound.
func (h *hammer) stopHammer(t *testing.T, bound time.Duration) {
	t.Helper()
	h.stop.Store(true)
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(bound):
		t.Fatalf("calls still in flight %v after the hammer stopped:\n%s", bound, strings.Join(h.stuck(bound/2), "\n"))
	}
	h.enter(h.phases[len(h.phases)-1].p)

	type key struct {
		phases string
		answer string
	}
	tally := map[key]int{}
	var bad []string
	var longest call
	for i, cs := range h.calls {
		for _, c := range cs {
			ps := h.overlapped(c)
			var names []string
			only := map[phase]bool{}
			for _, p := range ps {
				names = append(names, p.String())
				only[p] = true
			}
			tally[key{strings.Join(names, "+"), errnoName(c.errno)}]++
			if c.end.Sub(c.start) > longest.end.Sub(longest.start) {
				longest = c
			}
			var ok bool
			switch {
			case len(only) == 1 && only[loaded]:
				ok = c.errno == 0
			case len(only) == 1 && only[unloaded]:
				ok = c.errno == int(syscall.ENOPROTOOPT)
			default:
				ok = c.errno == 0 || c.errno == int(syscall.ENOPROTOOPT)
			}
			if !ok && len(bad) < 20 {
				bad = append(bad, fmt.Sprintf("thread %d: %v, during %s", i, c, strings.Join(names, "+")))
			}
			if c.end.Sub(c.start) > bound {
				t.Errorf("thread %d: %v: longer than %v", i, c, bound)
			}
		}
	}
	var lines []string
	for k, n := range tally {
		lines = append(lines, fmt.Sprintf("  %-28s %-22s %6d", k.phases, k.answer, n))
	}
	sort.Strings(lines)
	t.Logf("calls by the phases they overlapped and their answer:\n%s\nlongest: %v", strings.Join(lines, "\n"), longest)
	if len(bad) > 0 {
		t.Errorf("wrong answers (the first %d):\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

// overlapped is the phases that call c overlapped, in order.
func (h *hammer) overlapped(c call) []phase {
	var out []phase
	for i, m := range h.phases {
		end := time.Now()
		if i+1 < len(h.phases) {
			end = h.phases[i+1].at
		}
		if m.at.After(c.end) || !end.After(c.start) {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != m.p {
			out = append(out, m.p)
		}
	}
	return out
}

// count is how many calls of the threads got errno e in phase p only.
func (h *hammer) count(p phase, e int) int {
	n := 0
	for _, cs := range h.calls {
		for _, c := range cs {
			if ps := h.overlapped(c); len(ps) == 1 && ps[0] == p && c.errno == e {
				n++
			}
		}
	}
	return n
}
