//go:build vmguest

package enforce

// The umh as a process (find, stop, kill it), commands started in a
// namespace without waiting for them, and steady UDP streams.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// gone tells whether pid has left /proc (reaped, not only a zombie).
func gone(pid int) bool { _, ok := gt.ReadProc(pid); return !ok }

// exited tells whether pid has ended (a zombie, or gone).
func exited(pid int) bool { p, ok := gt.ReadProc(pid); return !ok || p.State == "Z" }

// killUmh SIGKILLs the umh pid and waits until it is gone.
func killUmh(t testing.TB, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill umh %d: %v", pid, err)
	}
	if !gt.Eventually(5*time.Second, func() bool { return gone(pid) }) {
		p, _ := gt.ReadProc(pid)
		t.Fatalf("killed umh %d did not go away: %+v", pid, p)
	}
}

// stopUmh SIGSTOPs the umh pid and waits until it is stopped; t's end
// continues it if it is still there.
func stopUmh(t testing.TB, pid int) {
	t.Helper()
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("stop umh %d: %v", pid, err)
	}
	if !gt.Eventually(5*time.Second, func() bool { p, ok := gt.ReadProc(pid); return ok && p.State == "T" }) {
		p, _ := gt.ReadProc(pid)
		t.Fatalf("umh %d did not stop: %+v", pid, p)
	}
}

// stopped tells whether pid is a stopped process.
func stopped(pid int) bool { p, ok := gt.ReadProc(pid); return ok && p.State == "T" }

// syscallOf is the syscall that pid is blocked in (-1: none, in user
// space), and false if that cannot be told: the task is on a CPU
// ("running") or gone.
func syscallOf(pid int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
	if err != nil {
		return 0, false
	}
	nr, err := strconv.Atoi(strings.Fields(string(b) + " x")[0])
	return nr, err == nil
}

// inSetsockopt tells whether pid is blocked inside setsockopt(2) (syscall
// 54 on x86_64) right now.
func inSetsockopt(pid int) bool {
	nr, ok := syscallOf(pid)
	return ok && nr == unix.SYS_SETSOCKOPT
}

// bg is a command running in the background; wait returns its output.
type bg struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

// start starts a command in the namespace and returns at once.
func (n *ns) start(t testing.TB, stdin, name string, args ...string) *bg {
	t.Helper()
	b := &bg{cmd: exec.Command(name, args...)}
	b.cmd.Stdin = strings.NewReader(stdin)
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
	if err := inNS(n.h, b.cmd.Start); err != nil {
		t.Fatalf("netns %s: start %s: %v", n.name, name, err)
	}
	return b
}

func (b *bg) wait() (string, error) {
	err := b.cmd.Wait()
	return b.out.String(), err
}

// stream sends one datagram of one tag on each of its senders every
// interval until stop.
type stream struct {
	tag  uint64
	sent atomic.Uint64 // datagrams sent on each sender
	stop atomic.Bool
	wg   sync.WaitGroup
	err  error
}

func startStream(interval time.Duration, ss ...*sender) *stream {
	st := &stream{tag: newTag()}
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		for seq := uint64(0); !st.stop.Load(); seq++ {
			for _, s := range ss {
				if err := s.send(st.tag, seq); err != nil {
					st.err = err
					return
				}
			}
			st.sent.Store(seq + 1)
			time.Sleep(interval)
		}
	}()
	return st
}

// end stops the stream and returns how many datagrams went on each sender.
func (st *stream) end(t testing.TB) int {
	t.Helper()
	st.stop.Store(true)
	st.wg.Wait()
	if st.err != nil {
		t.Fatalf("the stream: %v", st.err)
	}
	return int(st.sent.Load())
}
