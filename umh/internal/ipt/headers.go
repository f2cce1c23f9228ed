package ipt

import "encoding/binary"

// ReplaceHeader is struct ipt_replace without its entries.
type ReplaceHeader struct {
	Name        [TableMaxNameLen]byte
	ValidHooks  uint32
	NumEntries  uint32
	Size        uint32
	HookEntry   [NumHooks]uint32
	Underflow   [NumHooks]uint32
	NumCounters uint32
	// Counters is the caller's pointer where the old table's counters go.
	Counters uint64
}

// TableName is the table name as ip_tables looks it up.
func (h *ReplaceHeader) TableName() string { return TableName(h.Name[:]) }

// ParseReplaceHeader reads struct ipt_replace from the first ReplaceSize
// bytes of b.
func ParseReplaceHeader(b []byte) (ReplaceHeader, error) {
	var h ReplaceHeader
	if len(b) < ReplaceSize {
		return h, errorf(einval, "ipt_replace: %d bytes, need %d", len(b), ReplaceSize)
	}
	le := binary.LittleEndian
	copy(h.Name[:], b)
	h.ValidHooks = le.Uint32(b[32:])
	h.NumEntries = le.Uint32(b[36:])
	h.Size = le.Uint32(b[40:])
	for i := 0; i < NumHooks; i++ {
		h.HookEntry[i] = le.Uint32(b[44+4*i:])
		h.Underflow[i] = le.Uint32(b[64+4*i:])
	}
	h.NumCounters = le.Uint32(b[84:])
	h.Counters = le.Uint64(b[replaceCountersPtrOf:])
	return h, nil
}

// Marshal lays out the header (ReplaceSize bytes).
func (h *ReplaceHeader) Marshal() []byte {
	b := make([]byte, ReplaceSize)
	le := binary.LittleEndian
	copy(b, h.Name[:])
	le.PutUint32(b[32:], h.ValidHooks)
	le.PutUint32(b[36:], h.NumEntries)
	le.PutUint32(b[40:], h.Size)
	for i := 0; i < NumHooks; i++ {
		le.PutUint32(b[44+4*i:], h.HookEntry[i])
		le.PutUint32(b[64+4*i:], h.Underflow[i])
	}
	le.PutUint32(b[84:], h.NumCounters)
	le.PutUint64(b[replaceCountersPtrOf:], h.Counters)
	return b
}

// CheckReplaceHeader is the part of do_replace before translate_table,
// for a request of optlen bytes: the overflow check on num_counters, a
// non-zero num_counters, a buffer holding size bytes of entries, and
// xt_alloc_table_info's size limit. Passing it bounds every allocation
// that the size and counts of h can cause.
func CheckReplaceHeader(h *ReplaceHeader, optlen uint64) error {
	if h.NumCounters >= intMax/CountersSize {
		return errorf(enomem, "num_counters %d is too large", h.NumCounters)
	}
	if h.NumCounters == 0 {
		return errorf(einval, "num_counters is 0")
	}
	if optlen < uint64(h.Size)+ReplaceSize {
		return errorf(einval, "optlen %d is shorter than ipt_replace plus size %d", optlen, h.Size)
	}
	if uint64(h.Size)+tableInfoSize >= MaxTableSize {
		return errorf(enomem, "size %d exceeds the table size limit", h.Size)
	}
	return nil
}

// CheckNumCounters is xt_counters_alloc's limit, which __do_replace
// applies after translate_table: ENOMEM beyond XT_MAX_TABLE_SIZE bytes.
func CheckNumCounters(n uint32) error {
	if uint64(n)*CountersSize > MaxTableSize {
		return errorf(enomem, "num_counters %d exceeds the counters size limit", n)
	}
	return nil
}

// GetInfo is struct ipt_getinfo.
type GetInfo struct {
	Name       [TableMaxNameLen]byte
	ValidHooks uint32
	HookEntry  [NumHooks]uint32
	Underflow  [NumHooks]uint32
	NumEntries uint32
	Size       uint32
}

// Marshal lays out struct ipt_getinfo (GetInfoSize bytes).
func (g *GetInfo) Marshal() []byte {
	b := make([]byte, GetInfoSize)
	le := binary.LittleEndian
	copy(b, g.Name[:])
	le.PutUint32(b[32:], g.ValidHooks)
	for i := 0; i < NumHooks; i++ {
		le.PutUint32(b[36+4*i:], g.HookEntry[i])
		le.PutUint32(b[56+4*i:], g.Underflow[i])
	}
	le.PutUint32(b[76:], g.NumEntries)
	le.PutUint32(b[80:], g.Size)
	return b
}

// ParseGetInfo reads struct ipt_getinfo.
func ParseGetInfo(b []byte) (GetInfo, error) {
	var g GetInfo
	if len(b) < GetInfoSize {
		return g, errorf(einval, "ipt_getinfo: %d bytes, need %d", len(b), GetInfoSize)
	}
	le := binary.LittleEndian
	copy(g.Name[:], b)
	g.ValidHooks = le.Uint32(b[32:])
	for i := 0; i < NumHooks; i++ {
		g.HookEntry[i] = le.Uint32(b[36+4*i:])
		g.Underflow[i] = le.Uint32(b[56+4*i:])
	}
	g.NumEntries = le.Uint32(b[76:])
	g.Size = le.Uint32(b[80:])
	return g, nil
}

// ParseGetEntries reads the header of struct ipt_get_entries: the table
// name and the size the caller expects.
func ParseGetEntries(b []byte) (name string, size uint32, err error) {
	if len(b) < GetEntriesSize {
		return "", 0, errorf(einval, "ipt_get_entries: %d bytes, need %d", len(b), GetEntriesSize)
	}
	return TableName(b[:TableMaxNameLen]), binary.LittleEndian.Uint32(b[32:]), nil
}

// MarshalGetEntries lays out the header of struct ipt_get_entries.
func MarshalGetEntries(name string, size uint32) []byte {
	b := make([]byte, GetEntriesSize)
	putName(b[:TableMaxNameLen], name)
	binary.LittleEndian.PutUint32(b[32:], size)
	return b
}

// ParseCountersInfo reads the header of struct xt_counters_info.
func ParseCountersInfo(b []byte) (name string, num uint32, err error) {
	if len(b) < CountersInfoSize {
		return "", 0, errorf(einval, "xt_counters_info: %d bytes, need %d", len(b), CountersInfoSize)
	}
	return TableName(b[:TableMaxNameLen]), binary.LittleEndian.Uint32(b[32:]), nil
}

// MarshalCountersInfo lays out struct xt_counters_info with its counters.
func MarshalCountersInfo(name string, c []Counters) []byte {
	b := make([]byte, CountersInfoSize, CountersInfoSize+len(c)*CountersSize)
	putName(b[:TableMaxNameLen], name)
	binary.LittleEndian.PutUint32(b[32:], uint32(len(c)))
	return append(b, EncodeCounters(c)...)
}

// ParseGetRevision reads struct xt_get_revision: the name as the kernel
// sees it (last byte forced to NUL) and the revision.
func ParseGetRevision(b []byte) (name string, revision uint8, err error) {
	if len(b) < GetRevisionSize {
		return "", 0, errorf(einval, "xt_get_revision: %d bytes, need %d", len(b), GetRevisionSize)
	}
	return cstr(b[:ExtensionMaxNameLen-1]), b[ExtensionMaxNameLen], nil
}

// MarshalGetRevision lays out struct xt_get_revision.
func MarshalGetRevision(name string, revision uint8) []byte {
	b := make([]byte, GetRevisionSize)
	putName(b[:ExtensionMaxNameLen], name)
	b[ExtensionMaxNameLen] = revision
	return b
}
