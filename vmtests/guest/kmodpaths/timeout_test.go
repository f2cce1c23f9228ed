//go:build vmguest

package kmodpaths

import (
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// timedOutRe is what the module logs when the umh exceeds its bound.
var timedOutRe = regexp.MustCompile(`^bpfilter: bpfilter_umh did not answer in (\d+) ms: killed it$`)

// TestStuckUmhTimesOut: a umh that answers nothing (SIGSTOPped) holds no
// caller longer than bpfilter.timeout_ms: the call fails with ETIMEDOUT
// after about that long, the module kills the stuck umh and says so, a
// caller queued behind the stuck call is not stuck either, and the next
// call starts a new umh, which answers it and finds the table as it was.
func TestStuckUmhTimesOut(t *testing.T) {
	fresh(t)
	load(t, gt.GoodKO)
	restore(t, smallTable)
	const bound = 2 * time.Second
	setRequestBound(t, bound)
	pid := gt.UmhPid(t)

	k := gt.NewKmsg(t)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })

	type answer struct {
		errno int
		took  time.Duration
	}
	call := func(c chan<- answer) {
		fd, err := gt.RawSocket()
		if err != nil {
			c <- answer{errno: -1}
			return
		}
		defer unix.Close(fd)
		start := time.Now()
		_, err = getInfo(fd)
		c <- answer{gt.ErrnoOf(err), time.Since(start)}
	}
	first, second := make(chan answer, 1), make(chan answer, 1)
	go call(first)
	time.Sleep(bound / 4)
	go call(second)
	var a, b answer
	for i, c := range []chan answer{first, second} {
		select {
		case r := <-c:
			if i == 0 {
				a = r
			} else {
				b = r
			}
		case <-time.After(4*bound + callBound):
			t.Fatalf("call %d to a stopped umh still in flight after %v (bound %v)", i, 4*bound+callBound, bound)
		}
	}
	t.Logf("GET_INFO to a stopped umh: %s after %v; the call queued behind it: %s after %v",
		errnoName(a.errno), a.took.Round(time.Millisecond), errnoName(b.errno), b.took.Round(time.Millisecond))
	if a.errno != int(syscall.ETIMEDOUT) {
		t.Errorf("GET_INFO to a stopped umh: %s, want ETIMEDOUT", errnoName(a.errno))
	}
	if a.took < bound-100*time.Millisecond || a.took > 2*bound+5*time.Second {
		t.Errorf("GET_INFO to a stopped umh took %v, bound %v", a.took, bound)
	}
	// The queued call met either the stuck umh (and its own bound) or,
	// after the kill, a new umh.
	if b.errno != 0 && b.errno != int(syscall.ETIMEDOUT) {
		t.Errorf("the call queued behind it: %s, want 0 or ETIMEDOUT", errnoName(b.errno))
	}
	m := k.Wait(t, timedOutRe, 5*time.Second)
	if ms, _ := strconv.Atoi(m[1]); time.Duration(ms)*time.Millisecond != bound {
		t.Errorf("the module says it waited %s ms, the bound is %v", m[1], bound)
	}
	if !gt.Eventually(10*time.Second, func() bool { _, ok := gt.ReadProc(pid); return !ok }) {
		p, _ := gt.ReadProc(pid)
		t.Fatalf("the stuck umh %d is still there: %+v", pid, p)
	}

	// The next call starts a new umh, which has the table.
	fd, err := gt.RawSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	n, err := consistent(fd)
	if err != nil {
		t.Fatalf("after the stuck umh was killed: %v", err)
	}
	if n != smallEntries {
		t.Errorf("after the stuck umh was killed, the table has %d entries, want %d", n, smallEntries)
	}
	if got := gt.MustRun(t, "iptables-legacy", "-S"); got != smallRules {
		t.Errorf("after the stuck umh was killed: iptables-legacy -S:\n%s\nwant:\n%s", got, smallRules)
	}
	if npid := gt.UmhPid(t); npid == pid {
		t.Errorf("the umh still has the stuck one's pid %d", pid)
	}
	noFallback(t)
}
