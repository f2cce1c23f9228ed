package ipt

import (
	"encoding/binary"
	"net/netip"
)

// IP is struct ipt_ip, the address part of a rule. Addresses and masks are
// in network byte order, as the kernel keeps them.
type IP struct {
	Src, Dst         [4]byte
	SrcMask, DstMask [4]byte
	InIface          [IfNameSize]byte
	OutIface         [IfNameSize]byte
	InIfaceMask      [IfNameSize]byte
	OutIfaceMask     [IfNameSize]byte
	Proto            uint16 // 0: any
	Flags            uint8  // FlagFrag, FlagGoto
	InvFlags         uint8  // Inv*
}

func decodeIP(b []byte) IP {
	var ip IP
	copy(ip.Src[:], b[0:4])
	copy(ip.Dst[:], b[4:8])
	copy(ip.SrcMask[:], b[8:12])
	copy(ip.DstMask[:], b[12:16])
	copy(ip.InIface[:], b[16:32])
	copy(ip.OutIface[:], b[32:48])
	copy(ip.InIfaceMask[:], b[48:64])
	copy(ip.OutIfaceMask[:], b[64:80])
	ip.Proto = binary.LittleEndian.Uint16(b[80:82])
	ip.Flags = b[82]
	ip.InvFlags = b[83]
	return ip
}

func (ip *IP) put(b []byte) {
	copy(b[0:4], ip.Src[:])
	copy(b[4:8], ip.Dst[:])
	copy(b[8:12], ip.SrcMask[:])
	copy(b[12:16], ip.DstMask[:])
	copy(b[16:32], ip.InIface[:])
	copy(b[32:48], ip.OutIface[:])
	copy(b[48:64], ip.InIfaceMask[:])
	copy(b[64:80], ip.OutIfaceMask[:])
	binary.LittleEndian.PutUint16(b[80:82], ip.Proto)
	b[82] = ip.Flags
	b[83] = ip.InvFlags
}

// Bytes is the struct ipt_ip (IPSize bytes).
func (ip *IP) Bytes() []byte {
	b := make([]byte, IPSize)
	ip.put(b)
	return b
}

// IsZero reports whether every field is zero: with no matches, such a rule
// is what ip_tables calls unconditional.
func (ip *IP) IsZero() bool { return *ip == IP{} }

// checkEntry is ip_checkentry.
func (ip *IP) checkEntry() *Error {
	if ip.Flags&^FlagMask != 0 {
		return errorf(einval, "unknown ip flags %#x", ip.Flags)
	}
	if ip.InvFlags&^InvMask != 0 {
		return errorf(einval, "unknown ip invflags %#x", ip.InvFlags)
	}
	return nil
}

// SrcPrefix and DstPrefix are the address and mask as a prefix; ok is
// false when the mask is not contiguous (ip_tables accepts such masks).
func (ip *IP) SrcPrefix() (p netip.Prefix, ok bool) { return prefix(ip.Src, ip.SrcMask) }

// DstPrefix: see SrcPrefix.
func (ip *IP) DstPrefix() (p netip.Prefix, ok bool) { return prefix(ip.Dst, ip.DstMask) }

func prefix(a, m [4]byte) (netip.Prefix, bool) {
	mask := binary.BigEndian.Uint32(m[:])
	bits := 0
	for bits < 32 && mask&(1<<(31-bits)) != 0 {
		bits++
	}
	if bits < 32 && mask<<bits != 0 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(netip.AddrFrom4(a), bits), true
}

// SetSrc and SetDst set address and mask from a prefix, the way iptables
// stores "-s 10.0.0.0/8": the address is masked.
func (ip *IP) SetSrc(p netip.Prefix) { ip.Src, ip.SrcMask = fromPrefix(p) }

// SetDst: see SetSrc.
func (ip *IP) SetDst(p netip.Prefix) { ip.Dst, ip.DstMask = fromPrefix(p) }

func fromPrefix(p netip.Prefix) (a, m [4]byte) {
	var mask uint32
	if p.Bits() > 0 {
		mask = ^uint32(0) << (32 - p.Bits())
	}
	binary.BigEndian.PutUint32(m[:], mask)
	addr := p.Addr().As4()
	v := binary.BigEndian.Uint32(addr[:]) & mask
	binary.BigEndian.PutUint32(a[:], v)
	return a, m
}

// SetInIface and SetOutIface set an interface name and mask the way
// iptables' xtables_parse_interface does: the mask covers the name and its
// NUL, or, for a name ending in '+', the name without the '+'.
func (ip *IP) SetInIface(name string) { ip.InIface, ip.InIfaceMask = ifaceMask(name) }

// SetOutIface: see SetInIface.
func (ip *IP) SetOutIface(name string) { ip.OutIface, ip.OutIfaceMask = ifaceMask(name) }

func ifaceMask(name string) (n, m [IfNameSize]byte) {
	l := copy(n[:IfNameSize-1], name)
	if l == 0 {
		return n, m
	}
	k := l + 1
	if n[l-1] == '+' {
		k = l - 1
	}
	for i := 0; i < k && i < IfNameSize; i++ {
		m[i] = 0xFF
	}
	return n, m
}

// InIfaceName and OutIfaceName are the interface names as C strings.
func (ip *IP) InIfaceName() string { return cstr(ip.InIface[:]) }

// OutIfaceName: see InIfaceName.
func (ip *IP) OutIfaceName() string { return cstr(ip.OutIface[:]) }
