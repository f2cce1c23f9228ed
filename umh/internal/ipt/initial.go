package ipt

import "encoding/binary"

// InitialReplace lays out the table that ip_tables registers for a new
// network namespace (xt_alloc_initial_table): for each valid hook in
// order, one unconditional standard entry with the given verdict (ACCEPT
// when policies has none for the hook) as both hook entry and underflow,
// then the ERROR entry. num_counters is 0 and the counters pointer nil, as
// in the kernel's template.
func InitialReplace(name string, validHooks uint32, policies map[int]int32) []byte {
	var h ReplaceHeader
	putName(h.Name[:], name)
	h.ValidHooks = validHooks
	var entries []byte
	for hook := 0; hook < NumHooks; hook++ {
		if validHooks&(1<<hook) == 0 {
			continue
		}
		h.HookEntry[hook] = uint32(len(entries))
		h.Underflow[hook] = uint32(len(entries))
		v, ok := policies[hook]
		if !ok {
			v = VerdictAccept
		}
		entries = appendStandard(entries, v)
		h.NumEntries++
	}
	entries = appendError(entries, ErrorTarget)
	h.NumEntries++
	h.Size = uint32(len(entries))
	return append(h.Marshal(), entries...)
}

// appendStandard appends IPT_STANDARD_INIT(verdict): an unconditional
// struct ipt_standard.
func appendStandard(b []byte, verdict int32) []byte {
	e := make([]byte, StandardEntrySize)
	binary.LittleEndian.PutUint16(e[entryTargetOffOff:], EntrySize)
	binary.LittleEndian.PutUint16(e[entryNextOffOff:], StandardEntrySize)
	copy(e[EntrySize:], NewStandardTarget(verdict).Raw)
	return append(b, e...)
}

// appendError appends IPT_ERROR_INIT with the given errorname.
func appendError(b []byte, errorName string) []byte {
	e := make([]byte, ErrorEntrySize)
	binary.LittleEndian.PutUint16(e[entryTargetOffOff:], EntrySize)
	binary.LittleEndian.PutUint16(e[entryNextOffOff:], ErrorEntrySize)
	copy(e[EntrySize:], NewErrorTarget(errorName).Raw)
	return append(b, e...)
}

// InitialFilter is iptable_filter's table for a new network namespace
// (module parameter forward=1, the default: FORWARD accepts): INPUT,
// FORWARD and OUTPUT empty with ACCEPT policies. Its entries are 632 bytes:
// three struct ipt_standard (152) and one struct ipt_error (176).
func InitialFilter() *Table {
	blob := InitialReplace("filter", FilterValidHooks, nil)
	h, err := ParseReplaceHeader(blob)
	if err != nil {
		panic(err)
	}
	t, err := Translate(&h, blob[ReplaceSize:])
	if err != nil {
		panic("ipt: initial filter table does not validate: " + err.Error())
	}
	return t
}
