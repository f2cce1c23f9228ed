//go:build vmguest

package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
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

// The traffic benchmarks send through a lane of three network namespaces
// joined by veth pairs, the middle one being the DUT, whose filter table
// iptables-legacy sets (bpfilter's or ip_tables'):
//
//	src  s0 172.16.1.2/24 ---- dut-s 172.16.1.1/24  DUT  dut-d 172.16.2.1/24 ---- d0 172.16.2.2/24  dst
//
// Forwarding: src sends to dst (172.16.2.2) through the DUT, whose
// FORWARD chain judges the packets. Local delivery: src sends to the DUT
// (172.16.1.1), whose INPUT chain judges them. Only the DUT filters:
// ip_tables makes its filter table, and with it iptable_filter's hooks, in
// a namespace only when iptables asks for it there, and bpfilter
// registers its netfilter hooks only in the namespaces whose table it was
// given. Lanes are alike and independent, so that several can hold
// different tables at once.
const (
	srcAddr   = "172.16.1.2"
	dutSrcEnd = "172.16.1.1"
	dutDstEnd = "172.16.2.1"
	dstAddr   = "172.16.2.2"
	flowPort  = 9000 // the benchmark datagrams' destination port
	probePort = 7000 // the enforcement probes' destination port
)

// ns is a network namespace made for a benchmark.
type ns struct {
	h  netns.NsHandle
	nl *netlink.Handle
}

// do runs f on a thread in n.
func (n *ns) do(f func() error) error { return nettest.RunIn(n.h, f) }

// newNS makes a network namespace with lo up; it goes when t ends.
func newNS(t testing.TB) *ns {
	t.Helper()
	h, err := nettest.NewNamespace()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	n := &ns{h: h, nl: nl}
	t.Cleanup(func() { nl.Close(); h.Close() })
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return n
}

// lane is a DUT with its two neighbours.
type lane struct {
	src, dut, dst *ns
	rawSent       uint32 // datagrams of new connections sent (rawSender)
}

// newLane builds the namespaces and veth pairs of the picture above, with
// forwarding on in the DUT; they go when t ends.
func newLane(t testing.TB) *lane {
	t.Helper()
	l := &lane{src: newNS(t), dut: newNS(t), dst: newNS(t)}
	link := func(dutName, dutAddr string, peer *ns, peerName, peerAddr string) {
		if err := nettest.Veth(nettest.End{NS: l.dut.h, NL: l.dut.nl, Name: dutName, Addr: dutAddr + "/24"},
			nettest.End{NS: peer.h, NL: peer.nl, Name: peerName, Addr: peerAddr + "/24"}); err != nil {
			t.Fatal(err)
		}
		pl, err := peer.nl.LinkByName(peerName)
		if err != nil {
			t.Fatal(err)
		}
		if err := peer.nl.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Gw: net.ParseIP(dutAddr)}); err != nil {
			t.Fatalf("default route via %s: %v", dutAddr, err)
		}
	}
	link("dut-s", dutSrcEnd, l.src, "s0", srcAddr)
	link("dut-d", dutDstEnd, l.dst, "d0", dstAddr)
	if err := l.dut.do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	}); err != nil {
		t.Fatalf("ip_forward: %v", err)
	}
	return l
}

// bigReceiveBuffers lets the receivers' sockets hold a burst (the limit is
// global), so that what they count is what the DUT let through rather
// than what a small buffer kept.
func bigReceiveBuffers(t testing.TB) {
	t.Helper()
	writeSysctl(t, "/proc/sys/net/core/rmem_max", "8388608")
}

// run runs a command in n: it is forked from a thread in n, so it starts
// there.
func (n *ns) run(stdin, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := n.do(cmd.Start); err != nil {
		return "", err
	}
	err := cmd.Wait()
	return out.String(), err
}

// mustRun is run, failing t if the command fails.
func (n *ns) mustRun(t testing.TB, stdin, name string, args ...string) string {
	t.Helper()
	out, err := n.run(stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// restore runs iptables-legacy-restore of in in n.
func (n *ns) restore(t testing.TB, in string) {
	t.Helper()
	n.mustRun(t, in, "iptables-legacy-restore")
}

// writeSysctl sets a sysctl of the VM's initial network namespace and
// puts it back when t ends.
func writeSysctl(t testing.TB, file, v string) {
	t.Helper()
	old, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(v+"\n"), 0o644); err != nil {
		t.Fatalf("%s=%s: %v", file, v, err)
	}
	t.Cleanup(func() { _ = os.WriteFile(file, old, 0o644) })
}

// udpConn is a UDP socket made in n, bound to laddr and,
// if raddr is set, connected to it. A socket stays in the namespace it
// was made in, whichever thread uses it later.
func udpConn(t testing.TB, n *ns, laddr, raddr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	mk := func() error {
		la, err := net.ResolveUDPAddr("udp4", laddr)
		if err != nil {
			return err
		}
		if raddr == "" {
			c, err = net.ListenUDP("udp4", la)
			return err
		}
		ra, err := net.ResolveUDPAddr("udp4", raddr)
		if err != nil {
			return err
		}
		c, err = net.DialUDP("udp4", la, ra)
		return err
	}
	if err := n.do(mk); err != nil {
		t.Fatalf("udp %s -> %s: %v", laddr, raddr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// payloadSize is the UDP payload of the benchmark datagrams (64 bytes of
// IP: a minimal packet as packet-rate figures usually count it).
const payloadSize = 64 - 20 - 8

// receiver counts the datagrams of one measurement (those that carry its
// tag in their first 4 bytes) arriving on c, until stopped.
type receiver struct {
	c    *net.UDPConn
	tag  uint32
	n    atomic.Int64
	last atomic.Int64 // UnixNano of the latest datagram
	seq  atomic.Int64 // highest sequence number seen (bytes 4..12), -1 if none
	stop atomic.Bool
	done chan error
}

func startReceiver(c *net.UDPConn, tag uint32) *receiver {
	r := &receiver{c: c, tag: tag, done: make(chan error, 1)}
	r.seq.Store(-1)
	go func() {
		buf := make([]byte, 2048)
		for !r.stop.Load() {
			_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			k, err := c.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				r.done <- err
				return
			}
			if k < 12 || binary.BigEndian.Uint32(buf) != tag {
				continue
			}
			r.n.Add(1)
			r.last.Store(time.Now().UnixNano())
			if s := int64(binary.BigEndian.Uint64(buf[4:])); s > r.seq.Load() {
				r.seq.Store(s)
			}
		}
		r.done <- nil
	}()
	return r
}

// quiet waits until no datagram has come for d (at most max), and tells
// whether that happened. It waits d at least: datagrams sent just before
// may not have reached the receiver yet.
func (r *receiver) quiet(d, max time.Duration) bool {
	start := time.Now()
	for time.Since(start) < max {
		last := time.Unix(0, r.last.Load())
		if last.Before(start) {
			last = start
		}
		if time.Since(last) >= d {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func (r *receiver) close(t testing.TB) {
	t.Helper()
	r.stop.Store(true)
	if err := <-r.done; err != nil {
		t.Fatalf("receive: %v", err)
	}
}

// newTag is a random tag for one measurement's datagrams.
func newTag() uint32 { return rand.Uint32() | 1 }

// flood sends datagrams of tag on c (one per Write) for d, as fast as one
// thread can, and returns how many writes succeeded and how many failed.
func flood(c io.Writer, tag uint32, d time.Duration) (sent, failed int64) {
	buf := make([]byte, payloadSize)
	binary.BigEndian.PutUint32(buf, tag)
	end := time.Now().Add(d)
	for {
		for i := 0; i < 64; i++ {
			binary.BigEndian.PutUint64(buf[4:], uint64(sent+failed))
			if _, err := c.Write(buf); err != nil {
				failed++
			} else {
				sent++
			}
		}
		if time.Now().After(end) {
			return sent, failed
		}
	}
}

// prober sends one datagram of tag every interval on c, numbered from 0,
// and remembers when it sent each.
type prober struct {
	mu    sync.Mutex
	sent  []time.Time // by sequence number
	stop  chan struct{}
	done  chan struct{}
	fails int
}

func startProber(c *net.UDPConn, tag uint32, interval time.Duration) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		buf := make([]byte, payloadSize)
		binary.BigEndian.PutUint32(buf, tag)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			p.mu.Lock()
			seq := len(p.sent)
			binary.BigEndian.PutUint64(buf[4:], uint64(seq))
			now := time.Now()
			if _, err := c.Write(buf); err != nil {
				p.fails++
			} else {
				p.sent = append(p.sent, now)
			}
			p.mu.Unlock()
			time.Sleep(interval)
		}
	}()
	return p
}

// halt stops p and returns the send times of its datagrams.
func (p *prober) halt() (sent []time.Time, fails int) {
	close(p.stop)
	<-p.done
	return p.sent, p.fails
}

// count is how many datagrams p has sent so far.
func (p *prober) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sent)
}
