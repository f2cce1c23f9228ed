//go:build vmguest

package iptables

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// burstCalls is how many ordinary iptables commands TestRefusalLoggedAfterBurst
// makes before the refused one: each makes several sockopt calls, far more
// than the kernel lets one file of /dev/kmsg write in 5 s (gt.TraceBurst).
const burstCalls = 200

// refusedStringRe is the line in which bpfilter says why it refused a rule
// with `-m string` (an extension it does not enforce).
var refusedStringRe = regexp.MustCompile(`^bpfilter_umh: IPT_SO_SET_REPLACE: .*"string".*not supported`)

// perCallRe is a trace line: one per forwarded call.
var perCallRe = regexp.MustCompile(`^bpfilter_umh: [gs]etsockopt \d+ `)

// TestRefusalLoggedAfterBurst: the guest boots with the kernel's default
// printk.devkmsg=ratelimit, which drops what one open file of /dev/kmsg
// writes beyond 10 lines in 5 s. After a burst of ordinary iptables
// commands, and with a stream of ordinary calls going on meanwhile (so
// that no rate-limit window can have just begun when the refusal comes),
// the one line that says why bpfilter refused a rule is still in the
// kernel log: ordinary calls leave no line unless tracing is on, and trace
// lines are written on a file of their own, whose budget they exhaust
// without touching that of the notable lines.
func TestRefusalLoggedAfterBurst(t *testing.T) {
	defer gt.Use(t, gt.IPTables)
	for _, trace := range []bool{false, true} {
		t.Run(fmt.Sprintf("trace=%v", trace), func(t *testing.T) {
			gt.Use(t, gt.Bpfilter)
			k := gt.NewKmsg(t)
			gt.SetTrace(t, trace)

			start := time.Now()
			for i := 0; i < burstCalls; i++ {
				port := strconv.Itoa(1000 + i/4)
				rule := []string{"INPUT", "-p", "tcp", "--dport", port, "-j", "ACCEPT"}
				switch i % 4 {
				case 0:
					gt.MustRun(t, "iptables-legacy", append([]string{"-A"}, rule...)...)
				case 1:
					gt.MustRun(t, "iptables-legacy", append([]string{"-C"}, rule...)...)
				case 2:
					gt.MustRun(t, "iptables-legacy", "-S", "INPUT")
				case 3:
					gt.MustRun(t, "iptables-legacy", "-L", "INPUT", "-n", "-v", "-x")
				}
			}
			t.Logf("%d iptables-legacy commands in %v", burstCalls, time.Since(start).Round(time.Millisecond))

			stop, streamed := streamGetInfo(t)
			rule := []string{"-A", "INPUT", "-m", "string", "--string", "foo", "--algo", "bm", "-j", "DROP"}
			out, err := gt.Run("iptables-legacy", rule...)
			stop()
			if err == nil {
				t.Fatalf("bpfilter accepted a rule with the string match:\n%s", out)
			}
			elapsed := time.Since(start)
			t.Logf("%d IPT_SO_GET_INFO calls streamed around the refused command", *streamed)
			m := k.Wait(t, refusedStringRe, 5*time.Second)
			t.Logf("found: %s", m[0])
			traced := len(k.Grep(perCallRe))

			// The umh's files of /dev/kmsg close when it exits, before
			// the module says it stopped: the kernel then says how many
			// lines it dropped from each.
			gt.MustRun(t, "rmmod", "bpfilter")
			k.Wait(t, regexp.MustCompile(`^bpfilter: stopped$`), 5*time.Second)
			suppressed := k.Suppressed("bpfilter_umh")
			t.Logf("per-call lines in the log: %d; lines the kernel dropped, per file: %v", traced, suppressed)
			if !trace {
				if traced != 0 || len(suppressed) != 0 {
					t.Errorf("untraced, the umh logged %d per-call lines and the kernel dropped %v", traced, suppressed)
				}
				return
			}
			// Traced, the burst must really have exceeded the rate
			// limit (the trace file's lines were dropped), or this
			// test would not show that the refusal survives one; and
			// only the trace file lost lines.
			windows := int(elapsed/(5*time.Second)) + 2
			minDropped := max(1, *streamed-gt.TraceBurst)
			if traced == 0 || traced > gt.TraceBurst*windows || len(suppressed) != 1 || suppressed[0] < minDropped {
				t.Errorf("traced: %d per-call lines logged in %v, %v dropped: want 1..%d logged, and one file with at least %d dropped",
					traced, elapsed.Round(time.Millisecond), suppressed, gt.TraceBurst*windows, minDropped)
			}
		})
	}
}

// streamGetInfo makes ordinary IPT_SO_GET_INFO calls for the filter table,
// one every millisecond or so, until stop is called; *n counts them.
func streamGetInfo(t *testing.T) (stop func(), n *int) {
	t.Helper()
	fd, err := gt.RawSocket()
	if err != nil {
		t.Fatal(err)
	}
	n = new(int)
	done := make(chan struct{})
	finished := make(chan error)
	go func() {
		buf := make([]byte, 84) // struct ipt_getinfo
		copy(buf, "filter")
		for {
			select {
			case <-done:
				finished <- nil
				return
			default:
			}
			if _, err := gt.Getsockopt(fd, gt.GetInfo, buf); err != nil {
				finished <- fmt.Errorf("IPT_SO_GET_INFO: %w", err)
				return
			}
			*n++
			time.Sleep(time.Millisecond)
		}
	}()
	return func() {
		close(done)
		if err := <-finished; err != nil {
			t.Error(err)
		}
		unix.Close(fd)
	}, n
}
