//go:build vmguest

package kmodpaths

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

const bigRules = 10000

// bigTable is a restore input of bigRules rules in INPUT, and what
// iptables-legacy -S prints for it.
func bigTable() (input, rules string) {
	var in, s strings.Builder
	in.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	s.WriteString("-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n")
	for i := 0; i < bigRules; i++ {
		src := fmt.Sprintf("10.%d.%d.%d/32", 100+i>>16, i>>8&255, i&255)
		port := 1 + i%60000
		fmt.Fprintf(&in, "-A INPUT -s %s -p tcp --dport %d -j DROP\n", src, port)
		fmt.Fprintf(&s, "-A INPUT -s %s -p tcp -m tcp --dport %d -j DROP\n", src, port)
	}
	in.WriteString("COMMIT\n")
	return in.String(), s.String()
}

const (
	smallTable = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
		"-A INPUT -s 10.255.0.1/32 -j DROP\nCOMMIT\n"
	smallRules   = "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-A INPUT -s 10.255.0.1/32 -j DROP\n"
	smallEntries = 5 // three policies, the rule, the ERROR entry
)

// TestCallerKilledMidCall: iptables-legacy-restore of 10,000 rules (its
// SET_REPLACE keeps the umh busy for a good while) is sent SIGKILL while
// it waits for the umh's answer, and so is a second caller, queued behind
// it for the module's lock: once with the umh stopped (the module waits on
// it), once with the umh just woken, at work on the request. The module's waits are uninterruptible and bounded
// (bpfilter.timeout_ms): a killed caller finishes its call, its answer is
// dropped, and no reply is ever left owed to the next caller. So both
// killed processes are gone within the bound, and every call after them
// gets its own answer (a GET_INFO of the wrong length gets EINVAL, a
// GET_ENTRIES of the wrong size EAGAIN, good ones 0, in turn: any answer
// handed to the wrong caller shows). The umh keeps its pid, GET_INFO and
// GET_ENTRIES describe one table, the old one or the new one, iptables -S
// shows that one, and the module logs no trouble.
func TestCallerKilledMidCall(t *testing.T) {
	fresh(t)
	load(t, gt.GoodKO)
	pid := gt.UmhPid(t)
	input, bigOut := bigTable()

	// The umh is stopped once the caller is in its SET_REPLACE, so that
	// the kill lands inside the call for certain: with the umh stopped
	// (the module waiting on it), or just woken and at work on it.
	for _, r := range []struct {
		name  string
		woken bool
	}{{"umh stopped", false}, {"umh at work", true}} {
		t.Run(r.name, func(t *testing.T) {
			restore(t, smallTable)
			killMidReplace(t, pid, input, r.woken, bigOut)
			if npid := gt.UmhPid(t); npid != pid {
				t.Fatalf("the umh changed from %d to %d", pid, npid)
			}
		})
	}
	noFallback(t)
}

func restore(t *testing.T, input string) {
	t.Helper()
	if out, err := gt.Restore(input); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
}

// child is a process of the test and what it printed.
type child struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func (c *child) start(t *testing.T) {
	t.Helper()
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
}

// killedWithin waits up to bound for the child and fails t unless SIGKILL
// ended it within that time.
func (c *child) killedWithin(t *testing.T, name string, bound time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(bound):
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stack", c.cmd.Process.Pid))
		t.Fatalf("%s (pid %d) still there %v after SIGKILL; its kernel stack:\n%s", name, c.cmd.Process.Pid, bound, st)
	}
	ws, ok := err.(*exec.ExitError)
	if !ok || ws.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("%s did not die of SIGKILL: %v\n%s", name, err, c.out.String())
	}
}

func startRestore(t *testing.T, input string) *child {
	t.Helper()
	c := &child{cmd: exec.Command("iptables-legacy-restore")}
	c.cmd.Stdin = strings.NewReader(input)
	c.start(t)
	return c
}

// startProbe starts the test binary as a child that makes one GET_INFO
// call as soon as it reads a byte from the returned pipe.
func startProbe(t *testing.T) (*child, io.WriteCloser) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: exec.Command(self)}
	c.cmd.Env = []string{probeEnv + "=1"}
	w, err := c.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.start(t)
	// Ready when it waits for that byte.
	waitIn(t, c.cmd.Process.Pid, "reading its stdin", 2*time.Minute, func() bool {
		return inSyscall(c.cmd.Process.Pid, sysRead, 0)
	})
	return c, w
}

// killMidReplace restores input (bigOut is its iptables -S) with a caller
// that is killed inside its SET_REPLACE, together with a second caller
// queued behind it, and checks the calls that follow. The umh (umh) is
// stopped inside the replace until the kill, or (woken) woken just before
// it.
func killMidReplace(t *testing.T, umh int, input string, woken bool, bigOut string) {
	k := gt.NewKmsg(t)
	cont := func() { wake(t, umh) }
	defer cont()
	// A: the replace, B: a GET_INFO queued behind it. A's earlier calls
	// (GET_INFO, GET_ENTRIES) need the umh; the umh is stopped as soon as
	// A is seen in its SET_REPLACE. A thread of the umh that is in a
	// system call stops only when it returns, so the umh may have been
	// near the end of the replace: if A has its answer before the kill
	// could land (before the stop, or once woken), the round is tried
	// again.
	var a, b *child
	var inCall time.Time
	for try := 1; ; try++ {
		if a, b, inCall = replaceWithProbe(t, umh, input, woken); a != nil {
			break
		}
		restore(t, smallTable)
		if try == 10 {
			t.Fatalf("in %d tries, the umh answered the replace before the kill could land", try)
		}
	}
	// B waits uninterruptibly for the module's lock, A for the umh:
	// both finish their calls, and die on their way out.
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	killedAfter := killedAt.Sub(inCall)
	cont()
	// Both finish their calls (the module waits uninterruptibly), but
	// never for longer than the module's bound on a request each.
	bound := 2*requestBound(t) + 5*time.Second
	a.killedWithin(t, "iptables-legacy-restore", bound)
	aGone := time.Since(killedAt)
	b.killedWithin(t, "the GET_INFO probe", bound)
	t.Logf("both callers killed %v into the replace; gone %v (the replace) and %v (the probe) after the kill",
		killedAfter.Round(time.Millisecond), aGone.Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond))

	// The next calls, on one thread, each with an answer of its own.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := gt.RawSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	shortInfo := func() error {
		_, err := gt.Getsockopt(fd, gt.GetInfo, named(getInfoSize-1))
		return err
	}
	info := func() error { _, err := getInfo(fd); return err }
	calls := []struct {
		what string
		do   func() error
		want syscall.Errno
	}{
		{"GET_INFO of length 83", shortInfo, syscall.EINVAL},
		{"GET_INFO", info, 0},
		{"GET_ENTRIES of the wrong size", func() error { _, err := getEntries(fd, 8); return err }, syscall.EAGAIN},
		{"GET_INFO", info, 0},
		{"GET_INFO of length 83", shortInfo, syscall.EINVAL},
	}
	for i, c := range calls {
		start := time.Now()
		err := c.do()
		if i == 0 {
			t.Logf("the first call after the kill took %v",
				time.Since(start).Round(time.Millisecond))
		}
		if got := gt.ErrnoOf(err); got != int(c.want) {
			t.Errorf("call %d after the kill, %s: %s, want %s", i, c.what, errnoName(got), errnoName(int(c.want)))
		}
	}

	// The killed caller's request was whole in the umh or never sent:
	// the table is the old one or the new one, and iptables -S shows
	// which.
	n, err := consistent(fd)
	if err != nil {
		t.Fatal(err)
	}
	var want string
	switch n {
	case smallEntries:
		want = smallRules
	case bigRules + initialEntries:
		want = bigOut
	default:
		t.Fatalf("the table has %d entries: neither the old one (%d) nor the new one (%d)", n, smallEntries, bigRules+initialEntries)
	}
	replaced := n != smallEntries
	t.Logf("the dead caller's replace took effect: %v", replaced)
	if got := gt.MustRun(t, "iptables-legacy", "-S"); got != want {
		t.Errorf("iptables-legacy -S (replaced: %v): %d lines, want %d; first lines:\n%s", replaced,
			strings.Count(got, "\n"), strings.Count(want, "\n"), head(got, 6))
	}
	noTrouble(t, k)
}

func head(s string, n int) string {
	ls := strings.SplitN(s, "\n", n+1)
	if len(ls) > n {
		ls = ls[:n]
	}
	return strings.Join(ls, "\n")
}

// replaceWithProbe starts A, iptables-legacy-restore of input, stops the
// umh once A is in its SET_REPLACE, and starts B, a GET_INFO that waits
// behind A for the module's lock; with woken, the umh is woken again. It
// returns A, B and when A was seen in the call, or nil (both callers
// gone) if A had its answer before that was all done.
func replaceWithProbe(t *testing.T, umh int, input string, woken bool) (a, b *child, inCall time.Time) {
	t.Helper()
	cont := func() { wake(t, umh) }
	b, goB := startProbe(t)
	a = startRestore(t, input)
	pid := a.cmd.Process.Pid
	deadline := time.Now().Add(time.Minute)
	for !inSockopt(pid, sysSetsockopt, gt.SetReplace) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := syscall.Kill(umh, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Stopped for certain once /proc says so.
	if !gt.Eventually(5*time.Second, func() bool { p, _ := gt.ReadProc(umh); return p.State == "T" }) {
		t.Fatalf("the umh (pid %d) did not stop", umh)
	}
	inCall = time.Now()
	gone := func(what string) (*child, *child, time.Time) {
		t.Logf("iptables-legacy-restore had its answer %s: again", what)
		cont()
		goB.Close()
		a.cmd.Wait()
		b.cmd.Wait()
		return nil, nil, time.Time{}
	}
	if !inSockopt(pid, sysSetsockopt, gt.SetReplace) {
		return gone("before the umh stopped")
	}
	if _, err := goB.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	waitInSockopt(t, b.cmd.Process.Pid, sysGetsockopt, gt.GetInfo, time.Minute)
	if woken {
		cont()
	}
	if !stillInSockopt(pid, sysSetsockopt, gt.SetReplace) {
		return gone(fmt.Sprintf("%v after it was seen in the call", time.Since(inCall).Round(time.Millisecond)))
	}
	return a, b, inCall
}

// wake sends the stopped umh SIGCONT.
func wake(t *testing.T, umh int) {
	t.Helper()
	if err := syscall.Kill(umh, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}
