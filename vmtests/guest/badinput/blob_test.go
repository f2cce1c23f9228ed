//go:build vmguest

package badinput

// A small encoder and mutator of the iptables blobs, derived from what the
// kernel hands out (GET_INFO, GET_ENTRIES), for the layouts of
// include/uapi/linux/netfilter_ipv4/ip_tables.h and
// include/uapi/linux/netfilter/x_tables.h (x86_64).

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

var le = binary.LittleEndian

const (
	tableNameLen     = 32  // XT_TABLE_MAXNAMELEN
	getInfoSize      = 84  // struct ipt_getinfo
	getEntriesSize   = 40  // struct ipt_get_entries (without entries)
	replaceSize      = 96  // struct ipt_replace (without entries; entries at 96)
	replaceCountersP = 88  // offset of ipt_replace.counters
	countersInfoSize = 40  // struct xt_counters_info (without counters)
	counterSize      = 16  // struct xt_counters
	entrySize        = 112 // struct ipt_entry (without matches and target)
	targetHdrSize    = 32  // struct xt_entry_target / xt_entry_match header
	standardSize     = 40  // XT_ALIGN(struct xt_standard_target)
	errorSize        = 64  // XT_ALIGN(struct xt_error_target)
	numHooks         = 5   // NF_INET_NUMHOOKS

	// Offsets in struct ipt_entry.
	ipSrc        = 0
	ipDst        = 4
	ipSmsk       = 8
	ipDmsk       = 12
	ipProto      = 80
	ipFlags      = 82
	ipInvflags   = 83
	eTargetOff   = 88
	eNextOff     = 90
	eComefrom    = 92
	eCounters    = 96
	tSize        = 0  // target_size / match_size in a target or match
	tName        = 2  // name[29]
	tRevision    = 31 // revision
	tData        = 32 // target data: the verdict, the error name
	nfInetLocal  = 1  // NF_INET_LOCAL_IN
	nfInetFwd    = 2  // NF_INET_FORWARD
	nfInetOut    = 3  // NF_INET_LOCAL_OUT
	filterHooks  = 1<<nfInetLocal | 1<<nfInetFwd | 1<<nfInetOut
	verdictDrop  = -1 - 0 // -NF_DROP - 1
	verdictAcc   = -1 - 1 // -NF_ACCEPT - 1
	verdictRet   = -1 - 4 // XT_RETURN: -NF_REPEAT - 1
	verdictQueue = -1 - 3 // -NF_QUEUE - 1
)

// snap is what GET_INFO and GET_ENTRIES answered, byte for byte.
type snap struct {
	info    []byte // struct ipt_getinfo
	entries []byte // struct ipt_get_entries with its entries
}

func (s snap) equal(o snap) bool {
	return bytes.Equal(s.info, o.info) && bytes.Equal(s.entries, o.entries)
}

// diff describes where s and o differ.
func (s snap) diff(o snap) string {
	for _, p := range []struct {
		what string
		a, b []byte
	}{{"GET_INFO", s.info, o.info}, {"GET_ENTRIES", s.entries, o.entries}} {
		if bytes.Equal(p.a, p.b) {
			continue
		}
		if len(p.a) != len(p.b) {
			return fmt.Sprintf("%s: %d bytes, then %d", p.what, len(p.a), len(p.b))
		}
		for i := range p.a {
			if p.a[i] != p.b[i] {
				return fmt.Sprintf("%s: first difference at byte %d: %#02x, then %#02x", p.what, i, p.a[i], p.b[i])
			}
		}
	}
	return "no difference"
}

func putName(b []byte, name string) {
	clear(b[:tableNameLen])
	copy(b[:tableNameLen], name)
}

// getSnap reads the filter table: GET_INFO, then GET_ENTRIES of the size
// GET_INFO gave, each into a fresh zeroed buffer.
func getSnap(fd int) (snap, error) { return getSnapFill(fd, 0) }

// getSnapFill is getSnap with the GET_ENTRIES buffer filled with fill
// after its header: ip_tables leaves some bytes of the caller's buffer as
// they were (the bytes after the names of matches and targets).
func getSnapFill(fd int, fill byte) (snap, error) {
	info := make([]byte, getInfoSize)
	putName(info, "filter")
	if n, err := gt.Getsockopt(fd, gt.GetInfo, info); err != nil {
		return snap{}, fmt.Errorf("GET_INFO: %w", err)
	} else if n != getInfoSize {
		return snap{}, fmt.Errorf("GET_INFO: length %d", n)
	}
	size := le.Uint32(info[80:])
	ge := bytes.Repeat([]byte{fill}, getEntriesSize+int(size))
	putName(ge, "filter")
	le.PutUint32(ge[32:], size)
	if n, err := gt.Getsockopt(fd, gt.GetEntries, ge); err != nil {
		return snap{}, fmt.Errorf("GET_ENTRIES of %d bytes: %w", size, err)
	} else if n != len(ge) {
		return snap{}, fmt.Errorf("GET_ENTRIES: length %d, want %d", n, len(ge))
	}
	return snap{info: info, entries: ge}, nil
}

// entry is one struct ipt_entry of a table, as its offsets say.
type entry struct {
	off, targetOff, nextOff int
	chain                   string // the chain the entry belongs to
	target                  string // "" is the standard target
	verdict                 int32  // the standard target's
	errName                 string // the ERROR target's
	matches                 []int  // offsets of the matches in the entries
}

// table is a parsed snapshot.
type table struct {
	snap
	validHooks           uint32
	hookEntry, underflow [numHooks]uint32
	num, size            uint32
	ents                 []entry
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

var hookNames = [numHooks]string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

func parseTable(s snap) (*table, error) {
	t := &table{snap: s}
	in := s.info
	t.validHooks = le.Uint32(in[32:])
	for h := 0; h < numHooks; h++ {
		t.hookEntry[h] = le.Uint32(in[36+4*h:])
		t.underflow[h] = le.Uint32(in[56+4*h:])
	}
	t.num = le.Uint32(in[76:])
	t.size = le.Uint32(in[80:])
	es := t.entries0()
	if len(es) != int(t.size) {
		return nil, fmt.Errorf("GET_ENTRIES holds %d bytes of entries, GET_INFO says %d", len(es), t.size)
	}
	chain := ""
	for off := 0; off < len(es); {
		if off+entrySize > len(es) {
			return nil, fmt.Errorf("entry at %d: truncated", off)
		}
		e := entry{off: off, targetOff: int(le.Uint16(es[off+eTargetOff:])), nextOff: int(le.Uint16(es[off+eNextOff:]))}
		if e.nextOff < entrySize+targetHdrSize || off+e.nextOff > len(es) || e.targetOff < entrySize || e.targetOff+targetHdrSize > e.nextOff {
			return nil, fmt.Errorf("entry at %d: target_offset %d, next_offset %d", off, e.targetOff, e.nextOff)
		}
		for h := 0; h < numHooks; h++ {
			if t.validHooks&(1<<h) != 0 && uint32(off) == t.hookEntry[h] {
				chain = hookNames[h]
			}
		}
		for m := off + entrySize; m < off+e.targetOff; {
			e.matches = append(e.matches, m)
			ms := int(le.Uint16(es[m+tSize:]))
			if ms < targetHdrSize {
				return nil, fmt.Errorf("entry at %d: match_size %d", off, ms)
			}
			m += ms
		}
		tg := es[off+e.targetOff:]
		e.target = cstr(tg[tName : tName+29])
		switch e.target {
		case "":
			e.verdict = int32(le.Uint32(tg[tData:]))
		case "ERROR":
			e.errName = cstr(tg[tData : tData+30])
			chain = e.errName
		}
		e.chain = chain
		t.ents = append(t.ents, e)
		off += e.nextOff
	}
	if len(t.ents) != int(t.num) {
		return nil, fmt.Errorf("%d entries, GET_INFO says %d", len(t.ents), t.num)
	}
	return t, nil
}

// entries0 is the entries of the snapshot, without the GET_ENTRIES header.
func (t *table) entries0() []byte { return t.entries[getEntriesSize:] }

// find returns the first entry for which f holds; it panics if there is
// none, which means the known table is not what the cases assume.
func (t *table) find(what string, f func(e entry) bool) entry {
	for _, e := range t.ents {
		if f(e) {
			return e
		}
	}
	panic(fmt.Sprintf("the table has no %s", what))
}

// Landmarks of knownTable.
func (t *table) chainHead(name string) entry {
	return t.find("chain "+name, func(e entry) bool { return e.target == "ERROR" && e.errName == name })
}

// firstRule is the first entry of a user chain (after its ERROR head).
func (t *table) firstRule(name string) entry {
	h := t.chainHead(name)
	return t.find("first rule of "+name, func(e entry) bool { return e.off == h.off+h.nextOff })
}

// jump is the first jump (standard verdict >= 0) in chain.
func (t *table) jump(chain string) entry {
	return t.find("jump in "+chain, func(e entry) bool { return e.chain == chain && e.target == "" && e.verdict >= 0 })
}

// lastOf is the last entry of chain: its policy or its RETURN.
func (t *table) lastOf(chain string) entry {
	var last entry
	found := false
	for _, e := range t.ents {
		if e.chain == chain {
			last, found = e, true
		}
	}
	if !found {
		panic("no chain " + chain)
	}
	return last
}

func (t *table) trailer() entry { return t.ents[len(t.ents)-1] }

// withMatch is the first entry that has a match.
func (t *table) withMatch() entry {
	return t.find("rule with a match", func(e entry) bool { return len(e.matches) > 0 })
}

// replace is struct ipt_replace with its entries: a blob to mutate.
type replace struct {
	name                 string
	nameBytes            []byte // if set, the 32 name bytes as they are
	validHooks           uint32
	numEntries, size     uint32
	hookEntry, underflow [numHooks]uint32
	numCounters          uint32
	counters             uint64
	entries              []byte
}

// replaceOf is the blob that installs t again: valid as it is.
func (t *table) replaceOf(counters uintptr) *replace {
	return &replace{
		name:        "filter",
		validHooks:  t.validHooks,
		numEntries:  t.num,
		size:        t.size,
		hookEntry:   t.hookEntry,
		underflow:   t.underflow,
		numCounters: t.num,
		counters:    uint64(counters),
		entries:     bytes.Clone(t.entries0()),
	}
}

func (r *replace) bytes() []byte {
	b := make([]byte, replaceSize, replaceSize+len(r.entries))
	if r.nameBytes != nil {
		copy(b[:tableNameLen], r.nameBytes)
	} else {
		putName(b, r.name)
	}
	le.PutUint32(b[32:], r.validHooks)
	le.PutUint32(b[36:], r.numEntries)
	le.PutUint32(b[40:], r.size)
	for h := 0; h < numHooks; h++ {
		le.PutUint32(b[44+4*h:], r.hookEntry[h])
		le.PutUint32(b[64+4*h:], r.underflow[h])
	}
	le.PutUint32(b[84:], r.numCounters)
	le.PutUint64(b[replaceCountersP:], r.counters)
	return append(b, r.entries...)
}

// Field writers, at an offset in the entries.
func (r *replace) u8(off int, v uint8)   { r.entries[off] = v }
func (r *replace) u16(off int, v uint16) { le.PutUint16(r.entries[off:], v) }
func (r *replace) u32(off int, v uint32) { le.PutUint32(r.entries[off:], v) }
func (r *replace) i32(off int, v int32)  { le.PutUint32(r.entries[off:], uint32(v)) }

// verdict sets the standard verdict of e.
func (r *replace) verdict(e entry, v int32) { r.i32(e.off+e.targetOff+tData, v) }

// cut removes the entries bytes [from, to) and fixes size.
func (r *replace) cut(from, to int) {
	r.entries = append(r.entries[:from:from], r.entries[to:]...)
	r.size = uint32(len(r.entries))
}

// insert puts b at off and fixes size.
func (r *replace) insert(off int, b []byte) {
	r.entries = append(r.entries[:off:off], append(bytes.Clone(b), r.entries[off:]...)...)
	r.size = uint32(len(r.entries))
}

// countersInfo is struct xt_counters_info with n zero counters.
func countersInfo(name string, num uint32, n int) []byte {
	b := make([]byte, countersInfoSize+n*counterSize)
	putName(b, name)
	le.PutUint32(b[32:], num)
	return b
}

// call is one setsockopt: the bytes at optval, optlen, and where optval
// points.
type call struct {
	data   []byte
	optlen int // len(data) unless set
	lenSet bool
	ptr    ptrKind
}

type ptrKind int

const (
	ptrData     ptrKind = iota // data, right before an inaccessible page
	ptrNull                    // NULL
	ptrUnmapped                // an inaccessible page
)

func withData(b []byte) call { return call{data: b} }

func withLen(b []byte, optlen int) call { return call{data: b, optlen: optlen, lenSet: true} }

func (c call) length() int {
	if c.lenSet {
		return c.optlen
	}
	return len(c.data)
}

// send makes the call on fd.
func send(fd, opt int, c call) (syscall.Errno, error) {
	switch c.ptr {
	case ptrNull:
		return setsockoptAt(fd, opt, 0, c.length()), nil
	case ptrUnmapped:
		r, err := mapping(pageSize, 0)
		if err != nil {
			return 0, err
		}
		defer r.free()
		return setsockoptAt(fd, opt, r.addr(), c.length()), nil
	}
	buf, r, err := guarded(len(c.data))
	if err != nil {
		return 0, err
	}
	defer r.free()
	copy(buf, c.data)
	ptr := addrOf(buf)
	if len(buf) == 0 {
		ptr = r.addr() + uintptr(len(r.mem)-pageSize) // right at the guard page
	}
	return setsockoptAt(fd, opt, ptr, c.length()), nil
}
