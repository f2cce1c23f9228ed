//go:build vmguest

package badinput

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// netns is a network namespace of its own, held by one OS thread (which
// unshared into it and runs nothing else) and by an fd.
type netns struct {
	fd     int
	ino    uint64
	cookie uint64 // net_cookie: what the module and the umh know it by
	tid    int    // the thread that holds it
	do     chan func()
	done   chan struct{}
}

// newNetns creates a network namespace on a dedicated thread.
func newNetns(t *testing.T) *netns {
	t.Helper()
	n := &netns{fd: -1, do: make(chan func()), done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		defer close(n.done)
		// Never unlocked: when this goroutine ends, its thread ends,
		// and the thread's reference to the namespace with it.
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		// Leave the namespace before the goroutine ends: if its
		// thread is the main thread, the runtime does not end it (it
		// parks it for good), and the namespace would live on.
		defer unix.Setns(orig, unix.CLONE_NEWNET)
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			errc <- err
			return
		}
		cookie, err := gt.NetnsCookie()
		if err != nil {
			unix.Close(fd)
			errc <- fmt.Errorf("SO_NETNS_COOKIE: %w", err)
			return
		}
		n.fd, n.ino, n.cookie, n.tid = fd, st.Ino, cookie, unix.Gettid()
		errc <- nil
		for f := range n.do {
			f()
		}
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.close)
	return n
}

// inside runs f on the namespace's thread.
func (n *netns) inside(f func()) {
	done := make(chan struct{})
	n.do <- func() { f(); close(done) }
	<-done
}

// run runs a command in the namespace: it is forked from the namespace's
// thread, so it starts there.
func (n *netns) run(stdin, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	var err error
	n.inside(func() { err = cmd.Start() })
	if err != nil {
		return "", err
	}
	err = cmd.Wait()
	return out.String(), err
}

func (n *netns) mustRun(t *testing.T, stdin, name string, args ...string) string {
	t.Helper()
	out, err := n.run(stdin, name, args...)
	if err != nil {
		t.Fatalf("netns %d: %s %s: %v\n%s", n.ino, name, strings.Join(args, " "), err, out)
	}
	return out
}

// close drops every reference this process holds: the thread ends, the
// fd is closed.
func (n *netns) close() {
	if n.do != nil {
		close(n.do)
		n.do = nil
		<-n.done
	}
	if n.fd >= 0 {
		unix.Close(n.fd)
		n.fd = -1
	}
}

// toldGone waits until the umh says that the namespaces of cookies are
// gone. The module queues a namespace's exit and tells the umh with its
// next request: one GET_INFO a second, with the module's trace on for
// it alone (the exit lines are trace, and the kernel lets the umh's trace
// file write 10 lines per 5 s).
func toldGone(t *testing.T, k *gt.Kmsg, cookies ...uint64) {
	t.Helper()
	fd, err := gt.RawSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	told := func() bool {
		for _, c := range cookies {
			if len(k.Grep(regexp.MustCompile(fmt.Sprintf(`^bpfilter_umh: netns %d is gone$`, c)))) == 0 {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(30 * time.Second)
	for !told() {
		if time.Now().After(deadline) {
			t.Fatalf("the umh did not say that netns %v are gone within 30 s; kernel log:\n%s", cookies, strings.Join(k.Lines(), "\n"))
		}
		time.Sleep(time.Second)
		info := make([]byte, getInfoSize)
		putName(info, "filter")
		gt.SetTrace(t, true)
		_, err := gt.Getsockopt(fd, gt.GetInfo, info)
		gt.SetTrace(t, false)
		if err != nil {
			t.Fatalf("GET_INFO: %v", err)
		}
	}
}

func TestNamespaces(t *testing.T) {
	defer gt.Use(t, gt.IPTables)
	gt.Use(t, gt.Bpfilter)
	pid := gt.UmhPid(t)

	var initIno uint64
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	initIno = st.Ino

	initCookie, err := gt.NetnsCookie()
	if err != nil {
		t.Fatal(err)
	}
	a, b := newNetns(t), newNetns(t)
	if a.ino == b.ino || a.ino == initIno || b.ino == initIno {
		t.Fatalf("namespaces are not distinct: init %d, a %d, b %d", initIno, a.ino, b.ino)
	}
	if a.cookie == b.cookie || a.cookie == initCookie || b.cookie == initCookie {
		t.Fatalf("namespace cookies are not distinct: init %d, a %d, b %d", initCookie, a.cookie, b.cookie)
	}
	// The thread really is in its namespace.
	a.inside(func() {
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil || st.Ino != a.ino {
			t.Errorf("the namespace's thread is in netns %d (%v), want %d", st.Ino, err, a.ino)
		}
	})

	restoreTable(t, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -s 10.0.0.1/32 -j DROP\nCOMMIT\n")
	a.mustRun(t, "", "iptables-legacy", "-A", "INPUT", "-s", "10.1.0.0/16", "-j", "DROP")
	b.mustRun(t, "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:only-b - [0:0]\n-A OUTPUT -d 10.2.0.0/16 -j only-b\n-A only-b -p udp -j ACCEPT\nCOMMIT\n", "iptables-legacy-restore")

	want := map[string]string{
		"init": "-P INPUT ACCEPT\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n-A FORWARD -s 10.0.0.1/32 -j DROP\n",
		"a":    "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-A INPUT -s 10.1.0.0/16 -j DROP\n",
		"b":    "-P INPUT DROP\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-N only-b\n-A OUTPUT -d 10.2.0.0/16 -j only-b\n-A only-b -p udp -j ACCEPT\n",
	}
	check := func(when string) {
		t.Helper()
		got := map[string]string{
			"init": gt.MustRun(t, "iptables-legacy", "-S"),
			"a":    a.mustRun(t, "", "iptables-legacy", "-S"),
			"b":    b.mustRun(t, "", "iptables-legacy", "-S"),
		}
		for _, ns := range []string{"init", "a", "b"} {
			if got[ns] != want[ns] {
				t.Errorf("%s: iptables-legacy -S in netns %s:\n%s\nwant:\n%s", when, ns, got[ns], want[ns])
			}
		}
	}
	check("three namespaces")
	gt.Ensure(t, gt.Bpfilter)

	// Namespace a goes away: the module tells the umh, which forgets it.
	t.Logf("netns a (inode %d, cookie %d) on thread %d (the main thread: %v)", a.ino, a.cookie, a.tid, a.tid == unix.Getpid())
	k := gt.NewKmsg(t)
	cookie := a.cookie
	a.close()
	toldGone(t, k, cookie)
	t.Logf("netns %d: the umh was told it is gone", cookie)

	// The others keep their tables.
	delete(want, "a")
	got := gt.MustRun(t, "iptables-legacy", "-S")
	if got != want["init"] {
		t.Errorf("after netns a went: init namespace:\n%s\nwant:\n%s", got, want["init"])
	}
	if got := b.mustRun(t, "", "iptables-legacy", "-S"); got != want["b"] {
		t.Errorf("after netns a went: namespace b:\n%s\nwant:\n%s", got, want["b"])
	}
	// A new namespace starts from the initial table.
	c := newNetns(t)
	if got, w := c.mustRun(t, "", "iptables-legacy", "-S"), "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"; got != w {
		t.Errorf("a new namespace:\n%s\nwant:\n%s", got, w)
	}
	if c.cookie == cookie {
		t.Errorf("a new namespace has the dead one's cookie %d", cookie)
	}
	cookieB, cookieC := b.cookie, c.cookie
	b.close()
	c.close()
	toldGone(t, k, cookieB, cookieC)
	if err := sameUmh(pid); err != nil {
		t.Error(err)
	}
	gt.Ensure(t, gt.Bpfilter)
}
