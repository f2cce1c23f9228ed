package ipt

// struct xt_multiport_v1 (xt_multiport.h).
const (
	multiportSize = 48
	// MultiPorts is XT_MULTI_PORTS.
	MultiPorts = 15
)

// Multiport.Flags values.
const (
	MultiportSource      = 0 // XT_MULTIPORT_SOURCE
	MultiportDestination = 1 // XT_MULTIPORT_DESTINATION
	MultiportEither      = 2 // XT_MULTIPORT_EITHER
)

// Multiport is struct xt_multiport_v1, the data of match "multiport"
// revision 1. PFlags[i] != 0 makes Ports[i]..Ports[i+1] a range.
type Multiport struct {
	Flags  uint8
	Count  uint8
	Ports  [MultiPorts]uint16
	PFlags [MultiPorts]uint8
	Invert uint8
}

// ExtName is "multiport".
func (*Multiport) ExtName() string { return "multiport" }

// ExtRevision is 1.
func (*Multiport) ExtRevision() uint8 { return 1 }

// Marshal lays out struct xt_multiport_v1.
func (m *Multiport) Marshal() []byte {
	b := make([]byte, multiportSize)
	b[0], b[1] = m.Flags, m.Count
	for i, p := range m.Ports {
		putPort16(b[2+2*i:], p)
	}
	copy(b[32:47], m.PFlags[:])
	b[47] = m.Invert
	return b
}

func decodeMultiportAny(b []byte) any {
	m := &Multiport{Flags: b[0], Count: b[1], Invert: b[47]}
	for i := range m.Ports {
		m.Ports[i] = port16(b[2+2*i:])
	}
	copy(m.PFlags[:], b[32:47])
	return m
}

// checkMultiport is multiport_mt_check: a port protocol that is not
// inverted, a known flags value, at most 15 ports, well-formed ranges.
func checkMultiport(ip *IP, data []byte) *Error {
	m := decodeMultiportAny(data).(*Multiport)
	switch ip.Proto {
	case ProtoTCP, ProtoUDP, ProtoUDPLite, ProtoSCTP, ProtoDCCP:
	default:
		return errorf(einval, "match \"multiport\": protocol %d has no ports", ip.Proto)
	}
	if ip.InvFlags&InvProto != 0 {
		return errorf(einval, "match \"multiport\": protocol must not be inverted")
	}
	if m.Flags > MultiportEither {
		return errorf(einval, "match \"multiport\": unknown flags %d", m.Flags)
	}
	if m.Count > MultiPorts {
		return errorf(einval, "match \"multiport\": %d ports, at most %d", m.Count, MultiPorts)
	}
	// multiport_valid_ranges
	for i := 0; i < int(m.Count); i++ {
		if m.PFlags[i] == 0 {
			continue
		}
		i++
		if i >= int(m.Count) || m.PFlags[i] != 0 || m.Ports[i-1] > m.Ports[i] {
			return errorf(einval, "match \"multiport\": bad port range at %d", i-1)
		}
	}
	return nil
}
