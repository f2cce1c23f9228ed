package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// pkt is a crafted IPv4 packet and the interfaces it crosses.
type pkt struct {
	src, dst netip.Addr
	proto    uint8
	fragOff  uint16 // in 8-byte units
	mf       bool
	ipOpts   int    // IP option bytes (a multiple of 4)
	l4       []byte // transport bytes inside tot_len
	pad      int    // link-layer bytes after the IP packet
	in, out  string
	ct       *ctInfo // conntrack as nf_ct_get gives it; nil: the ctx has none
}

// ctInfo is what the module copies into the ctx's ct_* fields, in the
// ctx's byte order (addresses and ports as the packet holds them, read
// as host-order words).
type ctInfo struct {
	present, info, status, dir, proto, expires uint32
	addr                                       [4]uint32 // orig src, dst, reply src, dst
	port                                       [4]uint16
}

func (p *pkt) String() string {
	return fmt.Sprintf("%v>%v p%d frag%d l4=%x pad%d in=%q out=%q", p.src, p.dst, p.proto, p.fragOff, p.l4, p.pad, p.in, p.out)
}

// ip is the IP packet: what ip_tables sees as the skb (tot_len bytes).
func (p *pkt) ip() []byte {
	hl := 20 + p.ipOpts
	b := make([]byte, hl+len(p.l4))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	fo := p.fragOff & 0x1FFF
	if p.mf {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], fo)
	b[8] = 64
	b[9] = p.proto
	s, d := p.src.As4(), p.dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	for i := 20; i < hl; i++ {
		b[i] = 1 // NOP options
	}
	copy(b[hl:], p.l4)
	return b
}

// frame is the Ethernet frame BPF_PROG_TEST_RUN gets.
func (p *pkt) frame() []byte {
	eth := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00}
	f := append(eth, p.ip()...)
	return append(f, make([]byte, p.pad)...)
}

func tcpHdr(sport, dport uint16, flags uint8) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = 5 << 4
	b[13] = flags
	return b
}

func udpHdr(sport, dport uint16) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], 8)
	return b
}

func icmpHdr(typ, code uint8) []byte { return []byte{typ, code, 0, 0, 0, 0, 0, 0} }

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// tcpOpts is a tcp header with options (padded to 4 bytes by NOPs); doff,
// if not 0, overrides the data offset (in 4-byte words).
func tcpOpts(sport, dport uint16, flags uint8, opts []byte, doff uint8) []byte {
	b := tcpHdr(sport, dport, flags)
	for len(opts)%4 != 0 {
		opts = append(opts, 1)
	}
	b = append(b, opts...)
	if doff == 0 {
		doff = uint8(len(b) / 4)
	}
	b[12] = doff << 4
	return b
}
