package ipt

// struct xt_tcp and struct xt_udp (xt_tcpudp.h).
const (
	tcpSize = 12
	udpSize = 10
)

// Bits of TCP.InvFlags and UDP.InvFlags.
const (
	TCPInvSrcPorts = 0x01 // XT_TCP_INV_SRCPT
	TCPInvDstPorts = 0x02 // XT_TCP_INV_DSTPT
	TCPInvFlags    = 0x04 // XT_TCP_INV_FLAGS
	TCPInvOption   = 0x08 // XT_TCP_INV_OPTION
	TCPInvMask     = 0x0F // XT_TCP_INV_MASK
	UDPInvSrcPorts = 0x01 // XT_UDP_INV_SRCPT
	UDPInvDstPorts = 0x02 // XT_UDP_INV_DSTPT
	UDPInvMask     = 0x03 // XT_UDP_INV_MASK
)

// TCP is struct xt_tcp, the data of match "tcp" revision 0. Ports are
// inclusive ranges in host byte order; iptables' default is 0..65535.
type TCP struct {
	SrcPorts [2]uint16
	DstPorts [2]uint16
	Option   uint8
	FlagMask uint8
	FlagCmp  uint8
	InvFlags uint8
}

// ExtName is "tcp".
func (*TCP) ExtName() string { return "tcp" }

// ExtRevision is 0.
func (*TCP) ExtRevision() uint8 { return 0 }

// Marshal lays out struct xt_tcp.
func (t *TCP) Marshal() []byte {
	b := make([]byte, tcpSize)
	putPort16(b[0:], t.SrcPorts[0])
	putPort16(b[2:], t.SrcPorts[1])
	putPort16(b[4:], t.DstPorts[0])
	putPort16(b[6:], t.DstPorts[1])
	b[8], b[9], b[10], b[11] = t.Option, t.FlagMask, t.FlagCmp, t.InvFlags
	return b
}

func decodeTCP(b []byte) *TCP {
	return &TCP{
		SrcPorts: [2]uint16{port16(b[0:]), port16(b[2:])},
		DstPorts: [2]uint16{port16(b[4:]), port16(b[6:])},
		Option:   b[8], FlagMask: b[9], FlagCmp: b[10], InvFlags: b[11],
	}
}

func decodeTCPAny(b []byte) any { return decodeTCP(b) }

// checkTCP is tcp_mt_check.
func checkTCP(_ *IP, data []byte) *Error {
	if inv := data[11]; inv&^TCPInvMask != 0 {
		return errorf(einval, "match \"tcp\": unknown invflags %#x", inv)
	}
	return nil
}

// UDP is struct xt_udp, the data of match "udp" revision 0.
type UDP struct {
	SrcPorts [2]uint16
	DstPorts [2]uint16
	InvFlags uint8
}

// ExtName is "udp".
func (*UDP) ExtName() string { return "udp" }

// ExtRevision is 0.
func (*UDP) ExtRevision() uint8 { return 0 }

// Marshal lays out struct xt_udp.
func (u *UDP) Marshal() []byte {
	b := make([]byte, udpSize)
	putPort16(b[0:], u.SrcPorts[0])
	putPort16(b[2:], u.SrcPorts[1])
	putPort16(b[4:], u.DstPorts[0])
	putPort16(b[6:], u.DstPorts[1])
	b[8] = u.InvFlags
	return b
}

func decodeUDP(b []byte) *UDP {
	return &UDP{
		SrcPorts: [2]uint16{port16(b[0:]), port16(b[2:])},
		DstPorts: [2]uint16{port16(b[4:]), port16(b[6:])},
		InvFlags: b[8],
	}
}

func decodeUDPAny(b []byte) any { return decodeUDP(b) }

// checkUDP is udp_mt_check.
func checkUDP(_ *IP, data []byte) *Error {
	if inv := data[8]; inv&^UDPInvMask != 0 {
		return errorf(einval, "match \"udp\": unknown invflags %#x", inv)
	}
	return nil
}
