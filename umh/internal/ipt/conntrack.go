package ipt

import "encoding/binary"

// The data sizes of xt_conntrack's and xt_state's matches (matchsize),
// pinned to the C headers by conntrack_test.go.
const (
	conntrackSizeV1 = 152 // struct xt_conntrack_mtinfo1
	conntrackSizeV2 = 156 // struct xt_conntrack_mtinfo2
	conntrackSizeV3 = 164 // struct xt_conntrack_mtinfo3
	stateInfoSize   = 4   // struct xt_state_info
)

// Conntrack.MatchFlags and InvertFlags bits (xt_conntrack.h).
const (
	CTMatchState      = 1 << 0 // XT_CONNTRACK_STATE
	CTMatchProto      = 1 << 1
	CTMatchOrigSrc    = 1 << 2
	CTMatchOrigDst    = 1 << 3
	CTMatchReplSrc    = 1 << 4
	CTMatchReplDst    = 1 << 5
	CTMatchStatus     = 1 << 6
	CTMatchExpires    = 1 << 7
	CTMatchOrigSrcPrt = 1 << 8
	CTMatchOrigDstPrt = 1 << 9
	CTMatchReplSrcPrt = 1 << 10
	CTMatchReplDstPrt = 1 << 11
	CTMatchDirection  = 1 << 12
)

// State bits: XT_CONNTRACK_STATE_BIT(ctinfo) and XT_STATE_BIT(ctinfo) are
// 1 << (ctinfo % IP_CT_IS_REPLY + 1) for both matches; the others differ.
const (
	CTStateInvalid     = 1 << 0 // XT_CONNTRACK_STATE_INVALID, XT_STATE_INVALID
	CTStateEstablished = 1 << 1 // IP_CT_ESTABLISHED
	CTStateRelated     = 1 << 2 // IP_CT_RELATED
	CTStateNew         = 1 << 3 // IP_CT_NEW
	CTStateSNAT        = 1 << 6 // XT_CONNTRACK_STATE_SNAT
	CTStateDNAT        = 1 << 7 // XT_CONNTRACK_STATE_DNAT
	CTStateUntracked   = 1 << 8 // XT_CONNTRACK_STATE_UNTRACKED
	StateUntracked     = 1 << 6 // XT_STATE_UNTRACKED
)

// Conntrack is match "conntrack" revisions 1 to 3: struct
// xt_conntrack_mtinfo1, 2 and 3 (xt_conntrack.h), which share their
// layout up to invert_flags. Addresses are union nf_inet_addr (IPv4 in
// the first four bytes, network order). Ports are port numbers: revisions
// 1 and 2 hold them in network order (compared for equality), revision 3
// in host order (ranges with the *High ports). Revision 1's state_mask and
// status_mask are u8.
type Conntrack struct {
	Revision                 uint8
	OrigSrc, OrigSrcMask     [16]byte
	OrigDst, OrigDstMask     [16]byte
	ReplSrc, ReplSrcMask     [16]byte
	ReplDst, ReplDstMask     [16]byte
	ExpiresMin, ExpiresMax   uint32
	L4Proto                  uint16
	OrigSrcPort, OrigDstPort uint16
	ReplSrcPort, ReplDstPort uint16
	MatchFlags, InvertFlags  uint16
	StateMask, StatusMask    uint16
	// Revision 3: the upper ends of the port ranges.
	OrigSrcPortHigh, OrigDstPortHigh uint16
	ReplSrcPortHigh, ReplDstPortHigh uint16
}

// ExtName is "conntrack".
func (*Conntrack) ExtName() string { return "conntrack" }

// ExtRevision is the revision, 1 to 3.
func (c *Conntrack) ExtRevision() uint8 { return c.Revision }

func conntrackSize(rev uint8) int {
	switch rev {
	case 1:
		return conntrackSizeV1
	case 2:
		return conntrackSizeV2
	}
	return conntrackSizeV3
}

// Marshal lays out struct xt_conntrack_mtinfo<Revision>.
func (c *Conntrack) Marshal() []byte {
	le, be := binary.LittleEndian, binary.BigEndian
	b := make([]byte, conntrackSize(c.Revision))
	for i, a := range [][16]byte{c.OrigSrc, c.OrigSrcMask, c.OrigDst, c.OrigDstMask,
		c.ReplSrc, c.ReplSrcMask, c.ReplDst, c.ReplDstMask} {
		copy(b[16*i:], a[:])
	}
	le.PutUint32(b[128:], c.ExpiresMin)
	le.PutUint32(b[132:], c.ExpiresMax)
	le.PutUint16(b[136:], c.L4Proto)
	port := be.PutUint16
	if c.Revision == 3 {
		port = le.PutUint16
	}
	port(b[138:], c.OrigSrcPort)
	port(b[140:], c.OrigDstPort)
	port(b[142:], c.ReplSrcPort)
	port(b[144:], c.ReplDstPort)
	le.PutUint16(b[146:], c.MatchFlags)
	le.PutUint16(b[148:], c.InvertFlags)
	if c.Revision == 1 {
		b[150], b[151] = uint8(c.StateMask), uint8(c.StatusMask)
		return b
	}
	le.PutUint16(b[150:], c.StateMask)
	le.PutUint16(b[152:], c.StatusMask)
	if c.Revision == 3 {
		le.PutUint16(b[154:], c.OrigSrcPortHigh)
		le.PutUint16(b[156:], c.OrigDstPortHigh)
		le.PutUint16(b[158:], c.ReplSrcPortHigh)
		le.PutUint16(b[160:], c.ReplDstPortHigh)
	}
	return b
}

// decodeConntrackAny decodes validated data, whose length (the aligned
// size, which differs for each revision) tells the revision.
func decodeConntrackAny(b []byte) any {
	var rev uint8
	switch len(b) {
	case XTAlign(conntrackSizeV1):
		rev = 1
	case XTAlign(conntrackSizeV2):
		rev = 2
	case XTAlign(conntrackSizeV3):
		rev = 3
	default:
		return nil
	}
	le, be := binary.LittleEndian, binary.BigEndian
	c := &Conntrack{Revision: rev}
	for i, a := range []*[16]byte{&c.OrigSrc, &c.OrigSrcMask, &c.OrigDst, &c.OrigDstMask,
		&c.ReplSrc, &c.ReplSrcMask, &c.ReplDst, &c.ReplDstMask} {
		copy(a[:], b[16*i:16*i+16])
	}
	c.ExpiresMin = le.Uint32(b[128:])
	c.ExpiresMax = le.Uint32(b[132:])
	c.L4Proto = le.Uint16(b[136:])
	port := be.Uint16
	if rev == 3 {
		port = le.Uint16
	}
	c.OrigSrcPort, c.OrigDstPort = port(b[138:]), port(b[140:])
	c.ReplSrcPort, c.ReplDstPort = port(b[142:]), port(b[144:])
	c.MatchFlags = le.Uint16(b[146:])
	c.InvertFlags = le.Uint16(b[148:])
	if rev == 1 {
		c.StateMask, c.StatusMask = uint16(b[150]), uint16(b[151])
		return c
	}
	c.StateMask = le.Uint16(b[150:])
	c.StatusMask = le.Uint16(b[152:])
	if rev == 3 {
		c.OrigSrcPortHigh, c.OrigDstPortHigh = le.Uint16(b[154:]), le.Uint16(b[156:])
		c.ReplSrcPortHigh, c.ReplDstPortHigh = le.Uint16(b[158:]), le.Uint16(b[160:])
	}
	return c
}

// State is match "state" revision 0: struct xt_state_info.
type State struct {
	StateMask uint32 // XT_STATE_BIT(ctinfo), CTStateInvalid, StateUntracked
}

// ExtName is "state".
func (*State) ExtName() string { return "state" }

// ExtRevision is 0.
func (*State) ExtRevision() uint8 { return 0 }

// Marshal lays out struct xt_state_info.
func (s *State) Marshal() []byte {
	b := make([]byte, stateInfoSize)
	binary.LittleEndian.PutUint32(b, s.StateMask)
	return b
}

func decodeStateAny(b []byte) any { return &State{StateMask: binary.LittleEndian.Uint32(b)} }

// ReadsConntrack reports whether info is a match that reads conntrack
// (the module must then hold nf_ct_netns_get and fill the ct_* fields).
func ReadsConntrack(info any) bool {
	switch info.(type) {
	case *Conntrack, *State:
		return true
	}
	return false
}
