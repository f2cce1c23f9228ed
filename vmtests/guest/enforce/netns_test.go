//go:build vmguest

package enforce

// Minimal network-namespace and UDP helpers: namespaces held by an fd,
// veth pairs, commands run inside a namespace, UDP listeners that count
// what arrives by tag.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/nettest"
)

// ns is a network namespace, referenced by this process through h, the
// netlink socket nl, and the sockets made in it; close drops them all.
type ns struct {
	name    string
	h       netns.NsHandle
	nl      *netlink.Handle
	ino     uint64
	mu      sync.Mutex
	sockets []*net.UDPConn // closed with the namespace
	closed  bool
}

// inNS runs f on a thread switched into h.
func inNS(h netns.NsHandle, f func() error) error { return nettest.RunIn(h, f) }

func wrapNS(t *testing.T, name string, h netns.NsHandle) *ns {
	t.Helper()
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		t.Fatalf("netlink in netns %s: %v", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		t.Fatal(err)
	}
	n := &ns{name: name, h: h, nl: nl, ino: st.Ino}
	t.Cleanup(n.close)
	return n
}

// newNS makes a network namespace with lo up.
func newNS(t *testing.T, name string) *ns {
	t.Helper()
	h, err := nettest.NewNamespace()
	if err != nil {
		t.Fatalf("new netns %s: %v", name, err)
	}
	n := wrapNS(t, name, h)
	lo, err := n.nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.nl.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return n
}

// initNS is the VM's initial network namespace, where the test runs.
func initNS(t *testing.T) *ns {
	t.Helper()
	h, err := netns.GetFromPath("/proc/1/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return wrapNS(t, "init", h)
}

// close drops every reference this process holds to the namespace.
func (n *ns) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.closed = true
	for _, c := range n.sockets {
		c.Close()
	}
	n.nl.Close()
	n.h.Close()
}

// run runs a command inside the namespace (forked from a thread in it).
func (n *ns) run(stdin, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := inNS(n.h, cmd.Start); err != nil {
		return "", err
	}
	err := cmd.Wait()
	return out.String(), err
}

func (n *ns) mustRun(t testing.TB, stdin, name string, args ...string) string {
	t.Helper()
	out, err := n.run(stdin, name, args...)
	if err != nil {
		t.Fatalf("netns %s: %s %s: %v\n%s", n.name, name, strings.Join(args, " "), err, out)
	}
	return out
}

// ipt runs iptables-legacy in the namespace.
func (n *ns) ipt(t testing.TB, args ...string) string {
	t.Helper()
	return n.mustRun(t, "", "iptables-legacy", args...)
}

// restore runs iptables-legacy-restore of input in the namespace.
func (n *ns) restore(t testing.TB, input string) {
	t.Helper()
	n.mustRun(t, input, "iptables-legacy-restore")
}

// sysctl writes /proc/sys/<key> as seen from the namespace.
func (n *ns) sysctl(t testing.TB, key, val string) {
	t.Helper()
	err := inNS(n.h, func() error {
		return os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(val+"\n"), 0o644)
	})
	if err != nil {
		t.Fatalf("netns %s: sysctl %s=%s: %v", n.name, key, val, err)
	}
}

// links are the namespace's links.
func (n *ns) links(t testing.TB) []netlink.Link {
	t.Helper()
	ls, err := n.nl.LinkList()
	if err != nil {
		t.Fatalf("netns %s: links: %v", n.name, err)
	}
	return ls
}

// hasLink tells whether the namespace has a link of that name.
func (n *ns) hasLink(t testing.TB, name string) bool {
	t.Helper()
	for _, l := range n.links(t) {
		if l.Attrs().Name == name {
			return true
		}
	}
	return false
}

// veth joins a (interface an, address aAddr, as a CIDR) and b (bn, bAddr)
// and brings both ends up.
func veth(t testing.TB, a *ns, an, aAddr string, b *ns, bn, bAddr string) {
	t.Helper()
	if err := nettest.Veth(nettest.End{NS: a.h, NL: a.nl, Name: an, Addr: aAddr},
		nettest.End{NS: b.h, NL: b.nl, Name: bn, Addr: bAddr}); err != nil {
		t.Fatal(err)
	}
}

// payloadSize is the UDP payload of every test datagram, so that each is
// ipLen bytes of IP, which is what ip_tables counts.
const (
	payloadSize = 100
	ipLen       = 20 + 8 + payloadSize
)

var lastTag atomic.Uint64

// newTag names a burst of datagrams, so that a late arrival is never
// taken for one of another burst.
func newTag() uint64 { return lastTag.Add(1) }

// listener is a UDP socket in a namespace whose datagrams a goroutine
// counts by tag as they arrive.
type listener struct {
	addr   string
	mu     sync.Mutex
	counts map[uint64]int
	total  int
	bad    int // datagrams not of ours
}

// listen binds a UDP socket in n to addr and counts what arrives until
// the namespace or the test is closed.
func (n *ns) listen(t testing.TB, addr string) *listener {
	t.Helper()
	var c *net.UDPConn
	err := inNS(n.h, func() error {
		ua, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", ua)
		return err
	})
	if err != nil {
		t.Fatalf("netns %s: listen %s: %v", n.name, addr, err)
	}
	// A receive buffer big enough that a receiver the scheduler keeps
	// waiting never loses a datagram of a stream.
	if rc, err := c.SyscallConn(); err == nil {
		var serr error
		rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		})
		if serr != nil {
			t.Fatalf("SO_RCVBUFFORCE: %v", serr)
		}
	}
	n.mu.Lock()
	n.sockets = append(n.sockets, c)
	n.mu.Unlock()
	t.Cleanup(func() { c.Close() })
	l := &listener{addr: n.name + " " + addr, counts: map[uint64]int{}}
	go func() {
		buf := make([]byte, 2048)
		for {
			k, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			l.mu.Lock()
			if k == payloadSize {
				l.counts[binary.BigEndian.Uint64(buf)]++
				l.total++
			} else {
				l.bad++
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// count is how many datagrams of tag arrived.
func (l *listener) count(tag uint64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[tag]
}

// all is how many test datagrams arrived, of any tag, and how many others.
func (l *listener) all() (ours, others int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.bad
}

// waitCount waits until want datagrams of tag arrived, or timeout.
func (l *listener) waitCount(tag uint64, want int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if l.count(tag) >= want {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sender is a connected UDP socket in a namespace.
type sender struct {
	c   *net.UDPConn
	buf [payloadSize]byte
}

// dial makes a UDP socket in n that sends to dst.
func (n *ns) dial(t testing.TB, dst string) *sender {
	t.Helper()
	var c *net.UDPConn
	err := inNS(n.h, func() error {
		ua, err := net.ResolveUDPAddr("udp4", dst)
		if err != nil {
			return err
		}
		c, err = net.DialUDP("udp4", nil, ua)
		return err
	})
	if err != nil {
		t.Fatalf("netns %s: dial %s: %v", n.name, dst, err)
	}
	n.mu.Lock()
	n.sockets = append(n.sockets, c)
	n.mu.Unlock()
	t.Cleanup(func() { c.Close() })
	return &sender{c: c}
}

// send sends one datagram of tag with sequence number seq.
func (s *sender) send(tag uint64, seq uint64) error {
	binary.BigEndian.PutUint64(s.buf[0:], tag)
	binary.BigEndian.PutUint64(s.buf[8:], seq)
	_, err := s.c.Write(s.buf[:])
	return err
}

// burst sends count datagrams of a new tag and returns the tag.
func (s *sender) burst(t testing.TB, count int) uint64 {
	t.Helper()
	tag := newTag()
	for i := 0; i < count; i++ {
		if err := s.send(tag, uint64(i)); err != nil {
			t.Fatalf("send to %s: %v", s.c.RemoteAddr(), err)
		}
	}
	return tag
}

// arrivalWait bounds the wait for datagrams that should arrive; grace is
// how long datagrams that should not arrive get after those that should.
const (
	arrivalWait = 3 * time.Second
	grace       = 300 * time.Millisecond
)

// path is where a probe goes: a sender and the listener at its end.
type path struct {
	s *sender
	l *listener
}

// probe sends count datagrams along each of paths (in order) and returns
// how many arrived on each. It waits for the last path's datagrams (the
// one expected to pass), then grace for late arrivals elsewhere.
func probe(t testing.TB, count int, paths ...path) []int {
	t.Helper()
	tags := make([]uint64, len(paths))
	for i, p := range paths {
		tags[i] = p.s.burst(t, count)
	}
	last := len(paths) - 1
	paths[last].l.waitCount(tags[last], count, arrivalWait)
	time.Sleep(grace)
	got := make([]int, len(paths))
	for i, p := range paths {
		got[i] = p.l.count(tags[i])
	}
	return got
}

// expectProbe is probe with the expected arrivals, reported on t.
func expectProbe(t testing.TB, what string, count int, want []int, paths ...path) {
	t.Helper()
	got := probe(t, count, paths...)
	for i := range paths {
		if got[i] != want[i] {
			t.Errorf("%s: %s: %d of %d datagrams arrived, want %d", what, paths[i].l.addr, got[i], count, want[i])
		}
	}
}

// String makes a namespace print as its name.
func (n *ns) String() string { return fmt.Sprintf("netns %s (%d)", n.name, n.ino) }
