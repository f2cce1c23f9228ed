//go:build vmguest

package attach

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/nettest"
)

// testNS is a network namespace made for a test, with a netlink handle in it.
type testNS struct {
	name string
	ns   netns.NsHandle
	nl   *netlink.Handle
}

// inNS runs f on a thread in ns.
func inNS(ns netns.NsHandle, f func() error) error { return nettest.RunIn(ns, f) }

// newNS makes a network namespace with lo up.
func newNS(t *testing.T, name string) *testNS {
	t.Helper()
	ns, err := nettest.NewNamespace()
	if err != nil {
		t.Fatalf("new netns %s: %v", name, err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNS{name: name, ns: ns, nl: h}
	t.Cleanup(func() { h.Close(); ns.Close() })
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return n
}

// veth joins a (interface an, address aAddr) and b (bn, bAddr) and brings
// both ends up.
func veth(t *testing.T, a *testNS, an, aAddr string, b *testNS, bn, bAddr string) {
	t.Helper()
	if err := nettest.Veth(nettest.End{NS: a.ns, NL: a.nl, Name: an, Addr: aAddr},
		nettest.End{NS: b.ns, NL: b.nl, Name: bn, Addr: bAddr}); err != nil {
		t.Fatal(err)
	}
}

// route adds a default route via gw on dev.
func (n *testNS) route(t *testing.T, dev, gw string) {
	t.Helper()
	l, err := n.nl.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.nl.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
		t.Fatalf("%s: default via %s: %v", n.name, gw, err)
	}
}

// forwarding sets net.ipv4.ip_forward in n.
func (n *testNS) forwarding(t *testing.T, on bool) {
	t.Helper()
	v := "0\n"
	if on {
		v = "1\n"
	}
	err := inNS(n.ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(v), 0o644)
	})
	if err != nil {
		t.Fatalf("%s: ip_forward=%s: %v", n.name, v, err)
	}
}

// attacher is New on n's namespace, closed at cleanup.
func (n *testNS) attacher(t *testing.T) *Attacher {
	t.Helper()
	a, err := New(func() (*os.File, error) { return os.Open(fmt.Sprintf("/proc/self/fd/%d", int(n.ns))) }, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// listener is a UDP socket of n bound to addr.
func (n *testNS) listen(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := inNS(n.ns, func() error {
		ua, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", ua)
		return err
	})
	if err != nil {
		t.Fatalf("%s: listen %s: %v", n.name, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// payloadSize is the UDP payload of the test datagrams: each is
// 20 + 8 + payloadSize bytes of IP.
const payloadSize = 100

const ipLen = 20 + 8 + payloadSize

// send sends count datagrams of payloadSize bytes from n to dst. It
// returns how many writes failed (a TC drop on egress fails the write
// with ENOBUFS).
func (n *testNS) send(t *testing.T, dst string, count int, tag byte) int {
	t.Helper()
	var c *net.UDPConn
	err := inNS(n.ns, func() error {
		ua, err := net.ResolveUDPAddr("udp4", dst)
		if err != nil {
			return err
		}
		c, err = net.DialUDP("udp4", nil, ua)
		return err
	})
	if err != nil {
		t.Fatalf("%s: dial %s: %v", n.name, dst, err)
	}
	defer c.Close()
	failed := 0
	for i := 0; i < count; i++ {
		p := bytes.Repeat([]byte{tag}, payloadSize)
		if _, err := c.Write(p); err != nil {
			failed++
		}
	}
	return failed
}

// recvTimeout is how long a receiver waits for a datagram that may not come.
const recvTimeout = 1500 * time.Millisecond

// recv counts the datagrams of tag that arrive on c until none came for
// recvTimeout.
func recv(t *testing.T, c *net.UDPConn, tag byte) int {
	t.Helper()
	n := 0
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(time.Now().Add(recvTimeout))
		k, _, err := c.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return n
			}
			t.Fatalf("recv: %v", err)
		}
		if k == payloadSize && buf[0] == tag {
			n++
		}
	}
}

// exchange sends count datagrams from src to dst and returns how many
// arrived on c.
func exchange(t *testing.T, src *testNS, dst string, c *net.UDPConn, count int, tag byte) (got, writeErrs int) {
	t.Helper()
	writeErrs = src.send(t, dst, count, tag)
	return recv(t, c, tag), writeErrs
}

// ours lists bpfilter's filters and the clsact qdiscs on n's links.
func (n *testNS) ours(t *testing.T) (filters []string, clsacts []string) {
	t.Helper()
	links, err := n.nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			fs, err := n.nl.FilterList(l, parent)
			if err != nil {
				t.Fatalf("%s: filters of %s: %v", n.name, l.Attrs().Name, err)
			}
			for _, f := range fs {
				bf, ok := f.(*netlink.BpfFilter)
				if ok && (bf.Name == FilterIngress || bf.Name == FilterEgress) {
					filters = append(filters, fmt.Sprintf("%s:%s", l.Attrs().Name, bf.Name))
				}
			}
		}
		qs, err := n.nl.QdiscList(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			if q.Type() == "clsact" {
				clsacts = append(clsacts, l.Attrs().Name)
			}
		}
	}
	slices.Sort(clsacts)
	return filters, clsacts
}

// links are the names of n's links, sorted.
func (n *testNS) links(t *testing.T) []string {
	t.Helper()
	ls, err := n.nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		out = append(out, l.Attrs().Name)
	}
	slices.Sort(out)
	return out
}
