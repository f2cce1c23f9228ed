//go:build vmguest

package traffic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	nt "github.com/bpfilter/bpfilter/vmtests/guest/nettest"
	"golang.org/x/sys/unix"
)

// Real connections between namespaces for the stateful tests: what a
// client sees of a TCP connection, a UDP exchange on a connected socket or
// a ping, as one line of text that the two backends must share.

// connWait bounds every wait of a client. It is below the first SYN
// retransmission (1 s), so that a dropped SYN is sent once and counted
// once under both backends.
const connWait = 400 * time.Millisecond

// Sizes of the TCP exchange: the client sends tcpRequest bytes, the
// server answers tcpReply bytes.
const (
	tcpRequest = 100
	tcpReply   = 200
)

// tcpServer listens at at in h and serves each connection: it reads
// tcpRequest bytes, answers tcpReply bytes, then reads until the client's
// reset. It never closes first, so that it sends no FIN: a connection is
// the same packets under both backends. stop ends it.
func tcpServer(t *testing.T, h *nt.Host, at netip.AddrPort) (stop func()) {
	t.Helper()
	var l *net.TCPListener
	if err := h.Do(func() (err error) {
		l, err = net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(at))
		return err
	}); err != nil {
		t.Fatalf("listen in %s at %v: %v", h, at, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.AcceptTCP()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, tcpRequest)
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if _, err := c.Write(make([]byte, tcpReply)); err != nil {
					return
				}
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return func() { l.Close(); wg.Wait() }
}

// tcpConnect connects from h (from address src if valid, else the
// route's; from port sport if not 0, else an ephemeral one) to dst, and says what became of it: "connected, N bytes back"
// or the connect's error. A connection ends with a reset (SO_LINGER 0)
// after the reply, so that its packets do not depend on timing.
func tcpConnect(h *nt.Host, src netip.Addr, sport uint16, dst netip.AddrPort) string {
	var out string
	err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
			return err
		}
		if src.IsValid() || sport != 0 {
			sa := &unix.SockaddrInet4{Port: int(sport)}
			if src.IsValid() {
				sa.Addr = src.As4()
			}
			if err := unix.Bind(fd, sa); err != nil {
				return err
			}
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
		if err != nil && !errors.Is(err, unix.EINPROGRESS) {
			out = "connect: " + errnoName(err)
			return nil
		}
		if !waitFd(fd, unix.POLLOUT) {
			out = "connect: no answer"
			return nil
		}
		if e, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); e != 0 {
			out = "connect: " + errnoName(unix.Errno(e))
			return nil
		}
		if _, err := unix.Write(fd, make([]byte, tcpRequest)); err != nil {
			out = "write: " + errnoName(err)
			return nil
		}
		got := 0
		buf := make([]byte, 4096)
		for got < tcpReply && waitFd(fd, unix.POLLIN) {
			n, err := unix.Read(fd, buf)
			if err != nil || n == 0 {
				break
			}
			got += n
		}
		out = fmt.Sprintf("connected, %d bytes back", got)
		return nil
	})
	if err != nil {
		return "error: " + err.Error()
	}
	return out
}

// waitFd waits up to connWait for events on fd.
func waitFd(fd int, events int16) bool {
	deadline := time.Now().Add(connWait)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			return false
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0
	}
}

// udpEcho answers every datagram that reaches at in h with the same
// bytes, until stop.
func udpEcho(t *testing.T, h *nt.Host, at netip.AddrPort) (stop func()) {
	t.Helper()
	var c *net.UDPConn
	if err := h.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(at))
		return err
	}); err != nil {
		t.Fatalf("listen in %s at %v: %v", h, at, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return func() { c.Close(); <-done }
}

// udpExchange sends one datagram of payload bytes from a connected UDP
// socket of h (bound to src:sport if src is valid) to dst, with
// IP_RECVERR, and says what came back: the echo, or the ICMP error that
// the kernel queued (errno, type, code and sender), or nothing.
func udpExchange(h *nt.Host, src netip.Addr, sport uint16, dst netip.AddrPort, payload int) string {
	var out string
	err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1); err != nil {
			return err
		}
		if src.IsValid() {
			if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4(), Port: int(sport)}); err != nil {
				return err
			}
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}); err != nil {
			return err
		}
		if _, err := unix.Write(fd, make([]byte, payload)); err != nil {
			out = "send: " + errnoName(err)
			return nil
		}
		if !waitFd(fd, unix.POLLIN|unix.POLLERR) {
			out = "no answer"
			return nil
		}
		if e := icmpError(fd); e != "" {
			out = e
			return nil
		}
		n, err := unix.Read(fd, make([]byte, 2048))
		if err != nil {
			out = "receive: " + errnoName(err)
			return nil
		}
		out = fmt.Sprintf("echo of %d bytes", n)
		return nil
	})
	if err != nil {
		return "error: " + err.Error()
	}
	return out
}

// icmpError reads fd's error queue (IP_RECVERR): "" if it is empty, else
// the first error as "ECONNREFUSED by ICMP 3/3 from 10.6.0.1".
func icmpError(fd int) string {
	oob := make([]byte, 512)
	_, oobn, _, _, err := unix.Recvmsg(fd, make([]byte, 2048), oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
	if err != nil {
		return ""
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return "bad error queue: " + err.Error()
	}
	for _, m := range msgs {
		if m.Header.Level != unix.IPPROTO_IP || m.Header.Type != unix.IP_RECVERR || len(m.Data) < 16 {
			continue
		}
		// struct sock_extended_err, then the offender's sockaddr_in.
		errno := unix.Errno(binary.NativeEndian.Uint32(m.Data[0:]))
		origin, typ, code := m.Data[4], m.Data[5], m.Data[6]
		from := "?"
		if len(m.Data) >= 16+8 {
			a, _ := netip.AddrFromSlice(m.Data[16+4 : 16+8])
			from = a.String()
		}
		if origin != unix.SO_EE_ORIGIN_ICMP {
			return fmt.Sprintf("%s (origin %d)", errnoName(errno), origin)
		}
		return fmt.Sprintf("%s by ICMP %d/%d from %s", errnoName(errno), typ, code, from)
	}
	return ""
}

// ping sends one echo request of 56 bytes from h to dst, with ICMP id id,
// and says what came back: "echo reply from X", another ICMP message
// about it, or nothing.
func ping(h *nt.Host, dst netip.Addr, id uint16) string {
	var out string
	err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_ICMP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		req := nt.ICMP(8, 0, 56)
		binary.BigEndian.PutUint16(req[4:], id)
		binary.BigEndian.PutUint16(req[2:], 0)
		binary.BigEndian.PutUint16(req[2:], csum(req))
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrInet4{Addr: dst.As4()}); err != nil {
			out = "send: " + errnoName(err)
			return nil
		}
		buf := make([]byte, 2048)
		for waitFd(fd, unix.POLLIN) {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < 28 {
				continue
			}
			ihl := int(buf[0]&0xf) * 4
			if n < ihl+8 {
				continue
			}
			src, _ := netip.AddrFromSlice(buf[12:16])
			icmp := buf[ihl:n]
			switch {
			case icmp[0] == 0 && binary.BigEndian.Uint16(icmp[4:]) == id:
				out = "echo reply from " + src.String()
				return nil
			case (icmp[0] == 3 || icmp[0] == 11) && len(icmp) >= 8+20+8 &&
				binary.BigEndian.Uint16(icmp[8+20+4:]) == id:
				out = fmt.Sprintf("ICMP %d/%d from %s", icmp[0], icmp[1], src)
				return nil
			}
		}
		out = "no answer"
		return nil
	})
	if err != nil {
		return "error: " + err.Error()
	}
	return out
}

// raw is an IPv4 packet to craft: IP options and TOS, TTL and the DF flag
// are the caller's; the transport header (l4) gets its checksum.
type raw struct {
	src, dst netip.Addr
	proto    uint8
	id       uint16
	tos, ttl uint8
	df       bool
	ipOpts   []byte // a multiple of 4 bytes
	l4       []byte
}

func (r raw) bytes() []byte {
	hl := 20 + len(r.ipOpts)
	b := make([]byte, hl+len(r.l4))
	b[0] = 0x40 | byte(hl/4)
	b[1] = r.tos
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], r.id)
	if r.df {
		binary.BigEndian.PutUint16(b[6:], 0x4000)
	}
	b[8] = r.ttl
	if b[8] == 0 {
		b[8] = 64
	}
	b[9] = r.proto
	s, d := r.src.As4(), r.dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], r.ipOpts)
	l4 := b[hl:]
	copy(l4, r.l4)
	pseudo := make([]byte, 12)
	copy(pseudo, s[:])
	copy(pseudo[4:], d[:])
	pseudo[9] = r.proto
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(l4)))
	switch {
	case r.proto == unix.IPPROTO_TCP && len(l4) >= 20:
		binary.BigEndian.PutUint16(l4[16:], 0)
		binary.BigEndian.PutUint16(l4[16:], csum(append(pseudo, l4...)))
	case r.proto == unix.IPPROTO_UDP && len(l4) >= 8:
		binary.BigEndian.PutUint16(l4[6:], 0)
		binary.BigEndian.PutUint16(l4[6:], csum(append(pseudo, l4...)))
	case r.proto == unix.IPPROTO_ICMP && len(l4) >= 8:
		binary.BigEndian.PutUint16(l4[2:], 0)
		binary.BigEndian.PutUint16(l4[2:], csum(l4))
	}
	binary.BigEndian.PutUint16(b[10:], csum(b[:hl]))
	return b
}

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// tcpOpts is a TCP header (nt.TCP) with options appended (a multiple of
// 4 bytes) and the data offset set to match.
func tcpOpts(sport, dport uint16, flags uint8, seq, ack uint32, opts []byte) []byte {
	h := nt.TCP(sport, dport, flags)
	binary.BigEndian.PutUint32(h[4:], seq)
	binary.BigEndian.PutUint32(h[8:], ack)
	h = append(h, opts...)
	h[12] = byte(len(h)/4) << 4
	return h
}

// sendRaw sends crafted packets from h (IPPROTO_RAW: the header is ours).
func sendRaw(h *nt.Host, pkts ...raw) error {
	return h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, p := range pkts {
			if err := unix.Sendto(fd, p.bytes(), 0, &unix.SockaddrInet4{Addr: p.dst.As4()}); err != nil {
				return fmt.Errorf("raw send to %v: %w", p.dst, err)
			}
		}
		return nil
	})
}

// hostSysctl sets /proc/sys/net/<name> in h's namespace (the DUT's until t
// ends, restored; another host's for its life).
func hostSysctl(t *testing.T, h *nt.Host, name, v string) {
	t.Helper()
	if h.Name == "DUT" {
		nt.Sysctl(t, name, v)
		return
	}
	if err := h.Do(func() error {
		return os.WriteFile("/proc/sys/net/"+name, []byte(v+"\n"), 0o644)
	}); err != nil {
		t.Fatalf("%s: %s=%s: %v", h, name, v, err)
	}
}

// noICMPRateLimit lets every host of a test answer with as many ICMP
// errors as it must: the per-destination limit (1/s after a burst of 6)
// lives in the namespace, so the second backend would otherwise meet what
// the first one used up.
func noICMPRateLimit(t *testing.T, hosts ...*nt.Host) {
	t.Helper()
	for _, h := range hosts {
		hostSysctl(t, h, "ipv4/icmp_ratelimit", "0")
		hostSysctl(t, h, "ipv4/icmp_msgs_burst", "10000")
	}
}
