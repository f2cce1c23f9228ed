package ipt

import "encoding/binary"

// Counters is struct xt_counters.
type Counters struct {
	Pcnt, Bcnt uint64
}

func (c Counters) put(b []byte) {
	binary.LittleEndian.PutUint64(b, c.Pcnt)
	binary.LittleEndian.PutUint64(b[8:], c.Bcnt)
}

func decodeCounters(b []byte) Counters {
	return Counters{Pcnt: binary.LittleEndian.Uint64(b), Bcnt: binary.LittleEndian.Uint64(b[8:])}
}

// EncodeCounters lays out an array of struct xt_counters.
func EncodeCounters(c []Counters) []byte {
	b := make([]byte, len(c)*CountersSize)
	for i, x := range c {
		x.put(b[i*CountersSize:])
	}
	return b
}

// DecodeCounters reads an array of struct xt_counters; a trailing partial
// element is ignored.
func DecodeCounters(b []byte) []Counters {
	c := make([]Counters, len(b)/CountersSize)
	for i := range c {
		c[i] = decodeCounters(b[i*CountersSize:])
	}
	return c
}

// Entry is one struct ipt_entry with its matches and target.
type Entry struct {
	// Index is the entry's position in Table.Entries; Offset its byte
	// offset in the entries blob.
	Index  int
	Offset uint32

	IP           IP
	NFCache      uint32
	TargetOffset uint16
	NextOffset   uint16
	// Comefrom and Counters are as the caller handed them in: ip_tables
	// ignores both (it clears them before use).
	Comefrom uint32
	Counters Counters

	Matches []Match
	Target  Target
	// Trailer holds bytes between the end of the target and NextOffset
	// (ip_tables allows them; libiptc never makes them).
	Trailer []byte

	// Hooks is what ip_tables' mark_source_chains leaves in comefrom: the
	// bitmask of the hooks from which the entry can be reached. GET_ENTRIES
	// returns it in place of the caller's comefrom.
	Hooks uint32
	// Jump is, for a standard target that jumps, the index of the entry
	// jumped to; -1 otherwise. (It is also -1 for a jump from an entry no
	// hook reaches, Hooks == 0, to an offset that is no entry: ip_tables
	// only checks the jumps it can reach.)
	Jump int
}

// Goto reports whether the rule's jump is a goto (IPT_F_GOTO): no return
// address is pushed.
func (e *Entry) Goto() bool { return e.IP.Flags&FlagGoto != 0 }

// Unconditional is ip_tables' unconditional(): no matches and an all-zero
// ipt_ip.
func (e *Entry) Unconditional() bool {
	return e.TargetOffset == EntrySize && e.IP.IsZero()
}

// encode appends the entry as it was handed in.
func (e *Entry) encode(b []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, EntrySize)...)
	h := b[start:]
	e.IP.put(h)
	binary.LittleEndian.PutUint32(h[entryNFCacheOff:], e.NFCache)
	binary.LittleEndian.PutUint16(h[entryTargetOffOff:], e.TargetOffset)
	binary.LittleEndian.PutUint16(h[entryNextOffOff:], e.NextOffset)
	binary.LittleEndian.PutUint32(h[entryComefromOff:], e.Comefrom)
	e.Counters.put(h[entryCountersOff:])
	for i := range e.Matches {
		b = append(b, e.Matches[i].Raw...)
	}
	b = append(b, e.Target.Raw...)
	return append(b, e.Trailer...)
}

// entryHeader reads the fixed part of the entry at b (len(b) >= EntrySize).
func entryHeader(b []byte) (ip IP, targetOff, nextOff uint16) {
	return decodeIP(b), binary.LittleEndian.Uint16(b[entryTargetOffOff:]), binary.LittleEndian.Uint16(b[entryNextOffOff:])
}

// decodeEntry builds the model of an entry whose offsets
// checkEntrySizeAndHooks has validated; b is the entry's next_offset bytes.
func decodeEntry(b []byte, index int, off uint32) *Entry {
	ip, to, no := entryHeader(b)
	e := &Entry{
		Index: index, Offset: off, IP: ip,
		NFCache:      binary.LittleEndian.Uint32(b[entryNFCacheOff:]),
		TargetOffset: to, NextOffset: no,
		Comefrom: binary.LittleEndian.Uint32(b[entryComefromOff:]),
		Counters: decodeCounters(b[entryCountersOff:]),
		Jump:     -1,
	}
	for pos := EntrySize; pos < int(to); {
		size := int(binary.LittleEndian.Uint16(b[pos:]))
		raw := b[pos : pos+size]
		e.Matches = append(e.Matches, Match{
			Name: cstr(raw[extNameOff:extRevisionOff]), Revision: raw[extRevisionOff], Raw: raw,
		})
		pos += size
	}
	tsize := int(binary.LittleEndian.Uint16(b[to:]))
	e.Target = decodeTarget(b[to:int(to)+tsize], b[to:no])
	if end := int(to) + tsize; end < int(no) {
		e.Trailer = b[end:no]
	}
	return e
}
