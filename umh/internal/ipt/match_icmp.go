package ipt

// struct ipt_icmp (ip_tables.h).
const icmpSize = 4

// ICMPInv is IPT_ICMP_INV.
const ICMPInv = 0x01

// ICMP is struct ipt_icmp, the data of match "icmp" revision 0. Type 0xFF
// matches any type; Code is an inclusive range.
type ICMP struct {
	Type     uint8
	Code     [2]uint8
	InvFlags uint8
}

// ExtName is "icmp".
func (*ICMP) ExtName() string { return "icmp" }

// ExtRevision is 0.
func (*ICMP) ExtRevision() uint8 { return 0 }

// Marshal lays out struct ipt_icmp.
func (c *ICMP) Marshal() []byte { return []byte{c.Type, c.Code[0], c.Code[1], c.InvFlags} }

func decodeICMPAny(b []byte) any {
	return &ICMP{Type: b[0], Code: [2]uint8{b[1], b[2]}, InvFlags: b[3]}
}

// checkICMP is icmp_checkentry.
func checkICMP(_ *IP, data []byte) *Error {
	if inv := data[3]; inv&^ICMPInv != 0 {
		return errorf(einval, "match \"icmp\": unknown invflags %#x", inv)
	}
	return nil
}
