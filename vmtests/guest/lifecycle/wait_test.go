//go:build vmguest

package lifecycle

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// TimeoutParam bounds every wait of the module on the umh (kmod/main.c):
// past it the umh is killed and the call fails with ETIMEDOUT.
const TimeoutParam = "/sys/module/bpfilter/parameters/timeout_ms"

// setTimeout sets timeout_ms until t ends.
func setTimeout(t *testing.T, ms int) {
	t.Helper()
	old, err := os.ReadFile(TimeoutParam)
	if err != nil {
		t.Fatalf("bpfilter has no timeout_ms parameter: %v", err)
	}
	if err := os.WriteFile(TimeoutParam, []byte(strconv.Itoa(ms)+"\n"), 0); err != nil {
		t.Fatalf("timeout_ms=%d: %v", ms, err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(TimeoutParam); err == nil {
			_ = os.WriteFile(TimeoutParam, old, 0)
		}
	})
}

// liveUmh is the pid of the one running umh.
func liveUmh(t *testing.T) int {
	t.Helper()
	var live []gt.Proc
	for _, p := range gt.Procs("bpfilter_umh") {
		if p.State != "Z" {
			live = append(live, p)
		}
	}
	if len(live) != 1 {
		t.Fatalf("want one running bpfilter_umh, have %+v", live)
	}
	return live[0].Pid
}

// restoreC runs iptables-legacy-restore with args on input.
func restoreC(t *testing.T, input string, args ...string) {
	t.Helper()
	cmd := exec.Command("iptables-legacy-restore", args...)
	cmd.Stdin = strings.NewReader(input)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iptables-legacy-restore %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// countedTable has n rules in INPUT (and a user chain), rule i with the
// counters [i+1:(i+1)*64], for iptables-legacy-restore -c.
func countedTable(n int) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [3:300]\n:FORWARD DROP [4:400]\n:OUTPUT ACCEPT [5:500]\n:web - [0:0]\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "[%d:%d] -A INPUT -s 172.20.%d.%d/32 -p udp --dport %d -j DROP\n", i+1, (i+1)*64, (i/250)%250, i%250, 1000+i%50000)
	}
	b.WriteString("[7:700] -A INPUT -p tcp -j web\n[8:800] -A web -p tcp --dport 80 -j ACCEPT\nCOMMIT\n")
	return b.String()
}

// getInfo is IPT_SO_GET_INFO of the filter table on a raw socket.
func getInfo() error {
	fd, err := gt.RawSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	buf := make([]byte, 84) // struct ipt_getinfo
	copy(buf, "filter")
	_, err = gt.Getsockopt(fd, gt.GetInfo, buf)
	return err
}

// stopUmh SIGSTOPs pid and waits until it is stopped; t's end continues it.
func stopUmh(t *testing.T, pid int) {
	t.Helper()
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if !gt.Eventually(5*time.Second, func() bool { p, ok := gt.ReadProc(pid); return ok && p.State == "T" }) {
		t.Fatalf("umh %d did not stop", pid)
	}
}

// goneWithin fails t unless pid leaves /proc within 5 s.
func goneWithin(t *testing.T, pid int) {
	t.Helper()
	if !gt.Eventually(5*time.Second, func() bool { _, ok := gt.ReadProc(pid); return !ok }) {
		p, _ := gt.ReadProc(pid)
		t.Fatalf("the stuck umh %d is still there: %+v", pid, p)
	}
}

// TestBoundedWait: with timeout_ms=2000 and the umh stopped (SIGSTOP), a
// GET_INFO fails after about 2 s with ETIMEDOUT, the module says so, the
// stuck umh is killed, and the next call is answered by a new umh that
// took over the table: the same rules and counters as before. Then the
// same with iptables-legacy -L: libiptc tries again once after a failed
// first call (after modprobe ip_tables), which meets a fresh umh: it
// succeeds or fails with ETIMEDOUT, after about 2 s either way.
func TestBoundedWait(t *testing.T) {
	load(t, gt.GoodKO)
	restoreC(t, countedTable(20), "-c")
	wantS := gt.MustRun(t, "iptables-legacy", "-S")
	wantL := gt.MustRun(t, "iptables-legacy", "-L", "-v", "-x", "-n")
	setTimeout(t, 2000)
	timedOut := regexp.MustCompile(`^bpfilter: bpfilter_umh did not answer in 2000 ms: killed it$`)
	bounded := func(what string, took time.Duration) {
		t.Helper()
		if took < 1500*time.Millisecond || took > 10*time.Second {
			t.Errorf("%s returned after %v, with timeout_ms=2000", what, took.Round(time.Millisecond))
		}
	}
	same := func(when string) int {
		t.Helper()
		if s := gt.MustRun(t, "iptables-legacy", "-S"); s != wantS {
			t.Errorf("iptables-legacy -S %s:\n%s\nwant:\n%s", when, s, wantS)
		}
		if l := gt.MustRun(t, "iptables-legacy", "-L", "-v", "-x", "-n"); l != wantL {
			t.Errorf("iptables-legacy -L -v -x -n %s:\n%s\nwant:\n%s", when, l, wantL)
		}
		return liveUmh(t)
	}

	pid := liveUmh(t)
	stopUmh(t, pid)
	k := gt.NewKmsg(t)
	start := time.Now()
	err := getInfo()
	took := time.Since(start)
	t.Logf("GET_INFO with the umh stopped: %v after %v", err, took.Round(time.Millisecond))
	if gt.ErrnoOf(err) != int(syscall.ETIMEDOUT) {
		t.Errorf("GET_INFO with the umh stopped: %v, want ETIMEDOUT", err)
	}
	bounded("GET_INFO", took)
	k.Wait(t, timedOut, 5*time.Second)
	goneWithin(t, pid)
	if npid := same("after the timeout"); npid == pid {
		t.Errorf("the umh after the timeout has the stuck one's pid %d", pid)
	}

	pid = liveUmh(t)
	stopUmh(t, pid)
	k = gt.NewKmsg(t)
	start = time.Now()
	out, err := gt.Run("iptables-legacy", "-L", "-n")
	took = time.Since(start)
	t.Logf("iptables-legacy -L -n with the umh stopped, after %v: %v", took.Round(time.Millisecond), err)
	if err != nil && !regexp.MustCompile(`(?i)timed out`).MatchString(out) {
		t.Errorf("iptables-legacy -L -n failed, not with ETIMEDOUT: %s", out)
	}
	bounded("iptables-legacy -L -n", took)
	k.Wait(t, timedOut, 5*time.Second)
	goneWithin(t, pid)
	same("after iptables-legacy's timeout")
}

// inSetsockopt tells whether pid is inside setsockopt(2) (syscall 54 on
// x86_64) right now.
func inSetsockopt(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
	return err == nil && strings.HasPrefix(string(b), "54 ")
}

// listedCounters are the packet and byte counters of every rule and
// policy line of iptables-legacy -L -v -x -n, in order.
func listedCounters(t *testing.T, out string) []string {
	t.Helper()
	var cs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 8 && f[0] == "Chain" && f[2] == "(policy":
			cs = append(cs, f[1]+" policy "+f[4]+" "+f[6])
		case len(f) >= 2 && f[0] != "Chain" && f[0] != "pkts":
			cs = append(cs, f[0]+" "+f[1])
		}
	}
	return cs
}

// wakeups are the ways to wake the caller in the middle of a call without
// killing it.
type wakeup struct {
	name string
	wake func(t *testing.T, pid int) error
	// min is how many wakeups inside setsockopt the test wants.
	min int
}

var wakeups = []wakeup{
	{"SIGSTOP and SIGCONT", func(t *testing.T, pid int) error {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
		return syscall.Kill(pid, syscall.SIGCONT)
	}, 3},
}

// TestNonFatalWakeups: iptables-legacy-restore --noflush appends a rule to
// a 10,000-rule table (2,500 on the debug kernel: gt.Slowdown) whose rules have counters: it reads the table,
// replaces it (SET_REPLACE, over a second), and adds the old counters,
// which the replace handed back, to the new table. Woken again and again
// inside the replace (a group stop and continue), it
// still succeeds, never with EINTR, and every rule's counter is as before;
// the policies' are as ip_tables has them (gt.NoflushKeepsPolicies).
func TestNonFatalWakeups(t *testing.T) {
	// Long enough a replace for several wakeups on any kernel.
	n := 10000 / gt.Slowdown(t)
	load(t, gt.GoodKO)
	table := countedTable(n)
	restoreC(t, table, "-c")
	before := listedCounters(t, gt.MustRun(t, "iptables-legacy", "-L", "-v", "-x", "-n"))
	// INPUT's policy and n+1 rules, FORWARD's and OUTPUT's policies, web's rule.
	if len(before) != 1+n+1+2+1 || before[0] != "INPUT policy 3 300" || before[1] != "1 64" || before[n] != fmt.Sprintf("%d %d", n, n*64) {
		t.Fatalf("the counters restored with -c are not as given: %d lines, starting %q", len(before), before[:min(3, len(before))])
	}
	// The appended rule comes last in INPUT, with counters 0. The
	// policies' counters are what ip_tables shows after the same commands
	// with this libiptc (TestNoflushAppendPolicyCounters in the iptables
	// group): kept, or (before iptables 1.8.10) restarted from what was
	// counted between the read and the replace, none here.
	want := append(append(append([]string{}, before[:n+2]...), "0 0"), before[n+2:]...)
	if !gt.NoflushKeepsPolicies(t) {
		for j, c := range want {
			if f := strings.Fields(c); len(f) == 4 && f[1] == "policy" {
				want[j] = f[0] + " policy 0 0"
			}
		}
	}
	for i, w := range append([]wakeup{{"no wakeup", nil, 0}}, wakeups...) {
		t.Run(w.name, func(t *testing.T) {
			if i > 0 {
				restoreC(t, table, "-c")
			}
			cmd := exec.Command("iptables-legacy-restore", "--noflush")
			cmd.Stdin = strings.NewReader("*filter\n-A INPUT -p udp --dport 9 -j DROP\nCOMMIT\n")
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			var mu sync.Mutex
			done := false
			woken, wakeErrs := 0, []error{}
			var wg sync.WaitGroup
			if w.wake != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						mu.Lock()
						d := done
						mu.Unlock()
						if d {
							return
						}
						if inSetsockopt(pid) {
							if err := w.wake(t, pid); err != nil {
								wakeErrs = append(wakeErrs, err)
								return
							}
							woken++
						}
						time.Sleep(30 * time.Millisecond)
					}
				}()
			}
			err := cmd.Wait()
			mu.Lock()
			done = true
			mu.Unlock()
			wg.Wait()
			took := time.Since(start)
			t.Logf("iptables-legacy-restore --noflush took %v, woken %d times in setsockopt: %v %s",
				took.Round(time.Millisecond), woken, err, strings.TrimSpace(out.String()))
			for _, e := range wakeErrs {
				t.Errorf("waking it: %v", e)
			}
			if err != nil {
				t.Fatalf("iptables-legacy-restore --noflush failed (%v): %s", err, out.String())
			}
			if woken < w.min {
				t.Errorf("only %d wakeups fell inside setsockopt, want %d: the call was too short to test", woken, w.min)
			}
			got := listedCounters(t, gt.MustRun(t, "iptables-legacy", "-L", "-v", "-x", "-n"))
			if len(got) != len(want) {
				t.Fatalf("%d counter lines after the append, want %d", len(got), len(want))
			}
			bad := 0
			for j := range want {
				if got[j] != want[j] {
					if bad < 5 {
						t.Errorf("counters line %d: %q, want %q", j, got[j], want[j])
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d counters differ after the append", bad, len(want))
			}
		})
	}
}
