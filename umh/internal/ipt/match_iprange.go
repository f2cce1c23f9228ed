package ipt

import "net/netip"

// struct xt_iprange_mtinfo (xt_iprange.h).
const iprangeSize = 68

// IPRange.Flags bits.
const (
	IPRangeSrc    = 1 << 0 // IPRANGE_SRC
	IPRangeDst    = 1 << 1 // IPRANGE_DST
	IPRangeSrcInv = 1 << 4 // IPRANGE_SRC_INV
	IPRangeDstInv = 1 << 5 // IPRANGE_DST_INV
)

// IPRange is struct xt_iprange_mtinfo, the data of match "iprange"
// revision 1. Each address is a union nf_inet_addr: for IPv4, the address
// in network byte order in the first four bytes.
type IPRange struct {
	SrcMin, SrcMax [16]byte
	DstMin, DstMax [16]byte
	Flags          uint8
}

// ExtName is "iprange".
func (*IPRange) ExtName() string { return "iprange" }

// ExtRevision is 1.
func (*IPRange) ExtRevision() uint8 { return 1 }

// Marshal lays out struct xt_iprange_mtinfo.
func (r *IPRange) Marshal() []byte {
	b := make([]byte, iprangeSize)
	copy(b[0:], r.SrcMin[:])
	copy(b[16:], r.SrcMax[:])
	copy(b[32:], r.DstMin[:])
	copy(b[48:], r.DstMax[:])
	b[64] = r.Flags
	return b
}

func decodeIPRangeAny(b []byte) any {
	r := &IPRange{Flags: b[64]}
	copy(r.SrcMin[:], b[0:16])
	copy(r.SrcMax[:], b[16:32])
	copy(r.DstMin[:], b[32:48])
	copy(r.DstMax[:], b[48:64])
	return r
}

// Inet4 is an IPv4 address as a union nf_inet_addr.
func Inet4(a netip.Addr) (u [16]byte) {
	v := a.As4()
	copy(u[:], v[:])
	return u
}

// Addr4 is the IPv4 address held in a union nf_inet_addr.
func Addr4(u [16]byte) netip.Addr { return netip.AddrFrom4([4]byte(u[:4])) }
