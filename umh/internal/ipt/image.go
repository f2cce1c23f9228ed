package ipt

import (
	"encoding/binary"
	"fmt"
)

// WriteEntries lays the table over dst as ip_tables' copy_entries_to_user
// writes it into the caller's buffer for IPT_SO_GET_ENTRIES; dst must hold
// the caller's current buffer contents (t.Size bytes), because ip_tables
// leaves some bytes of it untouched. For each entry it writes:
//   - the ipt_entry up to the counters, with comefrom replaced by the
//     hooks mark_source_chains found (Entry.Hooks);
//   - counters[i] (zero when counters is shorter);
//   - for each match and the target: the size, the extension's name and
//     its NUL (the rest of the name field is not written), the revision,
//     then the extension's usersize (else its data size) of data and zeros
//     up to the aligned size (so padding the caller sent, and the kernel
//     state of limit and nfacct, come back as zeros);
//
// and nothing else: bytes after a target, up to next_offset, stay as they
// are in dst.
func (t *Table) WriteEntries(dst []byte, counters []Counters) error {
	if uint64(len(dst)) != uint64(t.Size) {
		return fmt.Errorf("entries buffer: %d bytes, table size %d", len(dst), t.Size)
	}
	for i, e := range t.Entries {
		d := dst[e.Offset:]
		e.IP.put(d)
		binary.LittleEndian.PutUint32(d[entryNFCacheOff:], e.NFCache)
		binary.LittleEndian.PutUint16(d[entryTargetOffOff:], e.TargetOffset)
		binary.LittleEndian.PutUint16(d[entryNextOffOff:], e.NextOffset)
		binary.LittleEndian.PutUint32(d[entryComefromOff:], e.Hooks)
		var c Counters
		if i < len(counters) {
			c = counters[i]
		}
		c.put(d[entryCountersOff:])
		off := EntrySize
		for k := range e.Matches {
			m := &e.Matches[k]
			extToUser(d[off:], m.Raw, m.ext)
			off += len(m.Raw)
		}
		extToUser(d[e.TargetOffset:], e.Target.Raw, e.Target.ext)
	}
	return nil
}

// extToUser is xt_match_to_user/xt_target_to_user for the
// xt_entry_match/target raw, whose extension is x (nil only for data that
// never passed Translate: then all data is copied).
func extToUser(d, raw []byte, x *extension) {
	copy(d[:extNameOff], raw[:extNameOff])
	name := cstr(raw[extNameOff:extRevisionOff])
	copy(d[extNameOff:], name)
	d[extNameOff+len(name)] = 0
	d[extRevisionOff] = raw[extRevisionOff]
	data := raw[EntryMatchSize:]
	n := len(data)
	if x != nil && x.userSize != 0 {
		n = min(n, x.userSize) // xt_data_to_user: usersize ? : size
	} else if x != nil {
		n = min(n, x.size)
	}
	copy(d[EntryMatchSize:], data[:n])
	clear(d[EntryMatchSize+n : EntryMatchSize+len(data)])
}

// KernelEntries is WriteEntries over a zeroed buffer: the entries as
// ip_tables holds them, for a caller whose buffer was zeroed.
func (t *Table) KernelEntries(counters []Counters) []byte {
	b := make([]byte, t.Size)
	if err := t.WriteEntries(b, counters); err != nil {
		panic(err) // cannot happen: b has t.Size bytes
	}
	return b
}

// Info is what IPT_SO_GET_INFO reports for the table.
func (t *Table) Info() GetInfo {
	g := GetInfo{
		ValidHooks: t.ValidHooks, HookEntry: t.HookEntry, Underflow: t.Underflow,
		NumEntries: uint32(len(t.Entries)), Size: t.Size,
	}
	putName(g.Name[:], t.Name)
	return g
}
