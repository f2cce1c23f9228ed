//go:build linux

package nettest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Probe is one IPv4 packet to send once on Path.
type Probe struct {
	Name     string // for messages
	Path     Path
	Src, Dst netip.Addr
	Proto    uint8  // IP protocol
	L4       []byte // everything after the IP header (TCP, UDP, ICMP build it)
	// FragOff is the fragment offset in 8-byte units: not 0 makes the
	// probe a non-first fragment, whose L4 is any data. MoreFrags sets
	// IP_MF (with FragOff 0: a first fragment, which has its header).
	FragOff   uint16
	MoreFrags bool
}

// TCP flags for TCP.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
	URG = 0x20
)

// TCP is a 20-byte TCP header (no options) with flags.
func TCP(sport, dport uint16, flags uint8) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 0x1000)
	if flags&ACK != 0 {
		binary.BigEndian.PutUint32(b[8:], 0x2000)
	}
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 1024)
	return b
}

// UDP is a UDP header and payload bytes of payload.
func UDP(sport, dport uint16, payload int) []byte {
	b := make([]byte, 8+payload)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	for i := 8; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

// ICMP is an ICMP header of type typ and code and payload zero bytes.
func ICMP(typ, code uint8, payload int) []byte {
	b := make([]byte, 8+payload)
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint16(b[4:], 0x4242)
	binary.BigEndian.PutUint16(b[6:], 1)
	return b
}

// Len is the probe's IP total length: what iptables counts as its bytes.
func (p Probe) Len() int { return 20 + len(p.L4) }

// fragment tells whether p is a fragment of any kind.
func (p Probe) fragment() bool { return p.FragOff != 0 || p.MoreFrags }

// packet is p on the wire with IP id id. Whole TCP, UDP and ICMP packets
// get their checksums (the kernel fills in the IP header's).
func (p Probe) packet(id uint16) []byte {
	b := make([]byte, p.Len())
	l4 := b[20:]
	copy(l4, p.L4)
	if !p.fragment() {
		switch {
		case p.Proto == unix.IPPROTO_TCP && len(l4) >= 20:
			binary.BigEndian.PutUint16(l4[16:], 0)
			binary.BigEndian.PutUint16(l4[16:], checksum(p.pseudo(len(l4)), l4))
		case p.Proto == unix.IPPROTO_UDP && len(l4) >= 8:
			binary.BigEndian.PutUint16(l4[6:], 0)
			c := checksum(p.pseudo(len(l4)), l4)
			if c == 0 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(l4[6:], c)
		case p.Proto == unix.IPPROTO_ICMP && len(l4) >= 8:
			binary.BigEndian.PutUint16(l4[2:], 0)
			binary.BigEndian.PutUint16(l4[2:], checksum(nil, l4))
		}
	}
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], id)
	frag := p.FragOff & 0x1fff
	if p.MoreFrags {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = 64
	b[9] = p.Proto
	s, d := p.Src.As4(), p.Dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[10:], checksum(nil, b[:20]))
	return b
}

// pseudo is the TCP/UDP pseudo header.
func (p Probe) pseudo(l4len int) []byte {
	b := make([]byte, 12)
	s, d := p.Src.As4(), p.Dst.As4()
	copy(b[0:], s[:])
	copy(b[4:], d[:])
	b[9] = p.Proto
	binary.BigEndian.PutUint16(b[10:], uint16(l4len))
	return b
}

func checksum(pseudo, data []byte) uint16 {
	var sum uint32
	for _, b := range [][]byte{pseudo, data} {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// local tells whether p's arrival is seen by the DUT's raw sockets (and
// not by the server's packet socket).
func (p Probe) local() bool { return p.Path == Input || p.Path == Loopback }

func (p Probe) check() error {
	switch {
	case p.Path < Input || p.Path > Loopback:
		return fmt.Errorf("probe %s: bad path %d", p.Name, p.Path)
	case !p.Src.Is4() || !p.Dst.Is4():
		return fmt.Errorf("probe %s: addresses %v -> %v are not IPv4", p.Name, p.Src, p.Dst)
	case p.local() && p.fragment():
		return fmt.Errorf("probe %s: a fragment on the %v path would wait for reassembly and never arrive", p.Name, p.Path)
	case p.Len() > 1400:
		return fmt.Errorf("probe %s: %d bytes", p.Name, p.Len())
	}
	return nil
}

// Result is what became of one probe.
type Result struct {
	Arrived bool
	// SendErr is what sendto answered. Client sends never fail (Send
	// fails instead); a DUT send may fail when OUTPUT drops the packet
	// (ip_tables answers EPERM), and the errno can differ by backend.
	SendErr error
}

// Send sends each probe once, in order, and reports which arrived: those
// seen on their path's receiver within Settle of the last send. Packets
// that are not probes of this topology (other traffic) are ignored. Send
// fails on anything that would make its report unreliable: a probe
// arriving twice or where its path does not lead, a client send failing,
// or a probe of an earlier Send arriving late.
func (tp *Topology) Send(probes []Probe) ([]Result, error) {
	for _, p := range probes {
		if err := p.check(); err != nil {
			return nil, err
		}
		if p.local() {
			if _, ok := tp.dutRx[p.Proto]; !ok {
				fd, err := rawReceiver(p.Proto)
				if err != nil {
					return nil, fmt.Errorf("DUT receiver for protocol %d: %w", p.Proto, err)
				}
				tp.dutRx[p.Proto] = fd
			}
		}
	}
	if len(probes) > 0xfff0 {
		return nil, fmt.Errorf("%d probes in one Send", len(probes))
	}
	var errs []error
	late := func(where string, local bool, pkt []byte) {
		if k, ok := keyOf(pkt); ok {
			if old, ok := tp.sent[k.id]; ok && old.key == k {
				errs = append(errs, fmt.Errorf("probe %s of an earlier Send arrived late on %s", old.name, where))
			}
		}
	}
	if err := tp.drain(late); err != nil {
		return nil, err
	}

	byKey := map[probeKey]int{}
	seen := make([]int, len(probes))
	res := make([]Result, len(probes))
	for i, p := range probes {
		id := tp.nextID
		tp.nextID++
		if tp.nextID == 0 {
			tp.nextID = 1
		}
		k := p.key(id)
		byKey[k] = i
		tp.sent[id] = sentProbe{k, p.Name}
		fd := tp.clientTx
		if p.Path == Output || p.Path == Loopback {
			fd = tp.dutTx
		}
		err := unix.Sendto(fd, p.packet(id), 0, &unix.SockaddrInet4{Addr: p.Dst.As4()})
		if err != nil && fd == tp.clientTx {
			return nil, fmt.Errorf("probe %s: client send: %w", p.Name, err)
		}
		res[i].SendErr = err
	}

	arrived := 0
	collect := func(where string, local bool, pkt []byte) {
		k, ok := keyOf(pkt)
		if !ok {
			return
		}
		i, ok := byKey[k]
		if !ok {
			late(where, local, pkt)
			return
		}
		p := probes[i]
		switch {
		case p.local() != local:
			errs = append(errs, fmt.Errorf("probe %s (%v path) seen on %s", p.Name, p.Path, where))
		case seen[i] > 0:
			errs = append(errs, fmt.Errorf("probe %s arrived more than once", p.Name))
		default:
			arrived++
		}
		seen[i]++
	}
	deadline := time.Now().Add(Settle)
	for {
		if err := tp.drain(collect); err != nil {
			return nil, err
		}
		if arrived == len(probes) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := range res {
		res[i].Arrived = seen[i] > 0
		if res[i].Arrived && res[i].SendErr != nil {
			errs = append(errs, fmt.Errorf("probe %s arrived although its send failed: %v", probes[i].Name, res[i].SendErr))
		}
	}
	return res, errors.Join(errs...)
}

// probeKey tells a probe from other packets: its IP id, protocol and
// addresses.
type probeKey struct {
	id       uint16
	proto    uint8
	src, dst netip.Addr
}

func (p Probe) key(id uint16) probeKey {
	return probeKey{id: id, proto: p.Proto, src: p.Src, dst: p.Dst}
}

type sentProbe struct {
	key  probeKey
	name string
}

// keyOf is the key of an IPv4 packet (from its header on).
func keyOf(pkt []byte) (probeKey, bool) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return probeKey{}, false
	}
	src, _ := netip.AddrFromSlice(pkt[12:16])
	dst, _ := netip.AddrFromSlice(pkt[16:20])
	return probeKey{id: binary.BigEndian.Uint16(pkt[4:]), proto: pkt[9], src: src, dst: dst}, true
}

// drain reads every receiver until it is empty and hands each packet (an
// IPv4 packet from its header on) to f.
func (tp *Topology) drain(f func(where string, local bool, pkt []byte)) error {
	buf := make([]byte, 2048)
	read := func(fd int, where string, local bool) error {
		for {
			n, from, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
			if errors.Is(err, unix.EAGAIN) {
				return nil
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("receive on %s: %w", where, err)
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			f(where, local, append([]byte(nil), buf[:n]...))
		}
	}
	if err := read(tp.serverRx, ServerIf, false); err != nil {
		return err
	}
	for proto, fd := range tp.dutRx {
		if err := read(fd, fmt.Sprintf("the DUT's raw socket for protocol %d", proto), true); err != nil {
			return err
		}
	}
	return nil
}
