package ipt

import (
	"encoding/binary"
	"fmt"
)

// Translate validates the entries of an IPT_SO_SET_REPLACE request, as
// translate_table does, and returns the table they make. h is the request
// header (CheckReplaceHeader should have passed), entries the h.Size bytes
// that follow it; Translate keeps its own copy.
//
// The checks and their errnos, in ip_tables' order:
//   - num_entries beyond what xt_alloc_entry_offsets allows: ENOMEM;
//   - each entry (check_entry_size_and_hooks): 8-byte aligned, more than an
//     ipt_entry left, next_offset within the blob and at least an
//     ipt_entry plus an xt_entry_target, known ip flags and invflags
//     (ip_checkentry), target_offset/next_offset/match sizes consistent
//     (xt_check_entry_offsets: standard target size and verdict, ERROR
//     target size and NUL), an underflow entry being an unconditional
//     ACCEPT or DROP: EINVAL;
//   - the number of entries equal to num_entries: EINVAL;
//   - every valid hook having an entry and an underflow, in increasing
//     order without duplicates (xt_check_table_hooks): EINVAL;
//   - no loops, jumps only to entry starts, no walking off the end
//     (mark_source_chains): ELOOP;
//   - each entry's matches then target (find_check_entry): a NUL within the
//     extension name (EINVAL), a known extension at that revision (ENOENT
//     or EPROTOTYPE), its exact aligned size and protocol, its checkentry
//     (EINVAL).
func Translate(h *ReplaceHeader, entries []byte) (*Table, error) {
	if uint64(len(entries)) < uint64(h.Size) {
		return nil, errorf(einval, "entries: %d bytes, size says %d", len(entries), h.Size)
	}
	if uint64(h.Size)+tableInfoSize >= MaxTableSize {
		return nil, errorf(enomem, "size %d exceeds the table size limit", h.Size)
	}
	// xt_alloc_entry_offsets
	if uint64(h.NumEntries) > MaxTableSize/4 {
		return nil, errorf(enomem, "num_entries %d is too large", h.NumEntries)
	}
	tr := &translator{h: h, blob: append([]byte(nil), entries[:h.Size]...)}
	return tr.run()
}

type translator struct {
	h         *ReplaceHeader
	blob      []byte
	hookEntry [NumHooks]uint32
	underflow [NumHooks]uint32
	offsets   []uint32
	entries   []*Entry
	stackSize int
}

func (tr *translator) run() (*Table, error) {
	for i := range tr.hookEntry {
		tr.hookEntry[i] = 0xFFFFFFFF
		tr.underflow[i] = 0xFFFFFFFF
	}
	size := uint32(len(tr.blob))
	var n uint32
	for pos := uint32(0); pos < size; {
		e, err := tr.checkEntrySizeAndHooks(pos, int(n))
		if err != nil {
			return nil, err
		}
		if n < tr.h.NumEntries {
			tr.offsets = append(tr.offsets, pos)
		}
		n++
		tr.entries = append(tr.entries, e)
		if e.Target.Kind == TargetError {
			tr.stackSize++
		}
		pos += uint32(e.NextOffset)
	}
	if n != tr.h.NumEntries {
		return nil, errorf(einval, "%d entries, num_entries says %d", n, tr.h.NumEntries)
	}
	if err := checkTableHooks(&tr.hookEntry, &tr.underflow, tr.h.ValidHooks); err != nil {
		return nil, err
	}
	hooks, err := markSourceChains(tr.blob, tr.entries, tr.offsets, &tr.hookEntry, tr.h.ValidHooks)
	if err != nil {
		return nil, err
	}
	for i, e := range tr.entries {
		e.Hooks = hooks[i]
		if err := findCheckEntry(e, tr.h.TableName()); err != nil {
			return nil, err
		}
	}
	t := &Table{
		Name: tr.h.TableName(), ValidHooks: tr.h.ValidHooks,
		HookEntry: tr.hookEntry, Underflow: tr.underflow,
		Size: size, Entries: tr.entries, StackSize: tr.stackSize, offsets: tr.offsets,
	}
	for _, e := range t.Entries {
		if e.Target.IsJump() {
			if to := t.EntryAt(uint32(e.Target.Verdict)); to != nil {
				e.Jump = to.Index
			}
		}
	}
	t.buildChains()
	return t, nil
}

// checkEntrySizeAndHooks is check_entry_size_and_hooks for the entry at
// pos, which becomes entry number index.
func (tr *translator) checkEntrySizeAndHooks(pos uint32, index int) (*Entry, error) {
	size := uint64(len(tr.blob))
	if pos%Align != 0 {
		return nil, errorf(einval, "entry at %d is not %d-byte aligned", pos, Align)
	}
	if uint64(pos)+EntrySize >= size {
		return nil, errorf(einval, "entry at %d: no room for an ipt_entry in size %d", pos, size)
	}
	b := tr.blob[pos:]
	ip, to, no := entryHeader(b)
	if uint64(pos)+uint64(no) > size {
		return nil, errorf(einval, "entry at %d: next_offset %d runs past size %d", pos, no, size)
	}
	if no < EntrySize+EntryTargetSize {
		return nil, errorf(einval, "entry at %d: next_offset %d is too small", pos, no)
	}
	if err := ip.checkEntry(); err != nil {
		err.Reason = fmt.Sprintf("entry at %d: %s", pos, err.Reason)
		return nil, err
	}
	b = b[:no]
	if err := checkEntryOffsets(b, to, no); err != nil {
		err.Reason = fmt.Sprintf("entry at %d: %s", pos, err.Reason)
		return nil, err
	}
	e := decodeEntry(b, index, pos)
	for h := 0; h < NumHooks; h++ {
		if tr.h.ValidHooks&(1<<h) == 0 {
			continue
		}
		if pos == tr.h.HookEntry[h] {
			tr.hookEntry[h] = pos
		}
		if pos == tr.h.Underflow[h] {
			if !checkUnderflow(e) {
				return nil, errorf(einval, "underflow of hook %s at %d is not an unconditional ACCEPT or DROP", HookNames[h], pos)
			}
			tr.underflow[h] = pos
		}
	}
	return e, nil
}

// checkEntryOffsets is xt_check_entry_offsets for the entry b of
// next_offset no bytes.
func checkEntryOffsets(b []byte, to, no uint16) *Error {
	if to < EntrySize {
		return errorf(einval, "target_offset %d is inside the ipt_entry", to)
	}
	if int(to)+EntryTargetSize > int(no) {
		return errorf(einval, "target_offset %d leaves no room for a target in next_offset %d", to, no)
	}
	t := b[to:]
	tsize := int(binary.LittleEndian.Uint16(t))
	if tsize < EntryTargetSize {
		return errorf(einval, "target_size %d is too small", tsize)
	}
	if int(to)+tsize > int(no) {
		return errorf(einval, "target_size %d at target_offset %d runs past next_offset %d", tsize, to, no)
	}
	switch {
	case cstrEq(t[extNameOff:], StandardTarget):
		if XTAlign(int(to)+EntryTargetSize+4) != int(no) {
			return errorf(einval, "standard target: next_offset %d, expected %d", no, XTAlign(int(to)+EntryTargetSize+4))
		}
		if v := int32(binary.LittleEndian.Uint32(t[EntryTargetSize:])); !verdictOK(v) {
			return errorf(einval, "standard target: bad verdict %d", v)
		}
	case cstrEq(t[extNameOff:], ErrorTarget):
		if tsize != ErrorTargetSize {
			return errorf(einval, "ERROR target: target_size %d, expected %d", tsize, ErrorTargetSize)
		}
		if strnlen(t[EntryTargetSize:EntryTargetSize+FunctionMaxNameLen]) == FunctionMaxNameLen {
			return errorf(einval, "ERROR target: errorname is not NUL-terminated")
		}
	}
	return checkEntryMatch(b, to)
}

// checkEntryMatch is xt_check_entry_match: the matches, each 8-byte
// aligned and at least an xt_entry_match, exactly fill the room between
// the ipt_entry and the target.
func checkEntryMatch(b []byte, to uint16) *Error {
	length := int(to) - EntrySize
	for pos := EntrySize; length > 0; {
		if pos%Align != 0 {
			return errorf(einval, "match at %d is not %d-byte aligned", pos, Align)
		}
		if length < EntryMatchSize {
			return errorf(einval, "match at %d: %d bytes left before the target", pos, length)
		}
		msize := int(binary.LittleEndian.Uint16(b[pos:]))
		if msize < EntryMatchSize {
			return errorf(einval, "match at %d: match_size %d is too small", pos, msize)
		}
		if msize > length {
			return errorf(einval, "match at %d: match_size %d runs past the target", pos, msize)
		}
		length -= msize
		pos += msize
	}
	return nil
}

// checkUnderflow is check_underflow: an underflow (policy) entry is an
// unconditional standard ACCEPT or DROP.
func checkUnderflow(e *Entry) bool {
	if !e.Unconditional() || e.Target.Kind != TargetStandard {
		return false
	}
	return e.Target.Verdict == VerdictDrop || e.Target.Verdict == VerdictAccept
}

// checkTableHooks is xt_check_table_hooks.
func checkTableHooks(entry, underflow *[NumHooks]uint32, valid uint32) *Error {
	var maxEntry, maxUflow uint32
	checkHooks := false
	for i := 0; i < NumHooks; i++ {
		if valid&(1<<i) == 0 {
			continue
		}
		if entry[i] == 0xFFFFFFFF {
			return errorf(einval, "hook %s: no entry at its hook_entry offset", HookNames[i])
		}
		if underflow[i] == 0xFFFFFFFF {
			return errorf(einval, "hook %s: no entry at its underflow offset", HookNames[i])
		}
		if checkHooks {
			switch {
			case maxUflow > underflow[i]:
				return errorf(einval, "unsorted underflow at hook %d", i)
			case maxUflow == underflow[i]:
				return errorf(einval, "duplicate underflow at hook %d", i)
			case maxEntry > entry[i]:
				return errorf(einval, "unsorted entry at hook %d", i)
			case maxEntry == entry[i]:
				return errorf(einval, "duplicate entry at hook %d", i)
			}
		}
		maxEntry, maxUflow = entry[i], underflow[i]
		checkHooks = true
	}
	return nil
}

// findCheckEntry is find_check_entry: look up and check each match, then
// the target, for table.
func findCheckEntry(e *Entry, table string) error {
	for k := range e.Matches {
		m := &e.Matches[k]
		x, err := lookupExtension(false, m.Raw)
		if err != nil {
			return prefixErr(e, err)
		}
		if err := checkExtension(x, false, m.Data(), &e.IP, table, e.Hooks); err != nil {
			return prefixErr(e, err)
		}
		m.Info = x.decode(m.Data())
		m.ext = x
	}
	x, err := lookupExtension(true, e.Target.Raw)
	if err != nil {
		return prefixErr(e, err)
	}
	if err := checkExtension(x, true, e.Target.Data(), &e.IP, table, e.Hooks); err != nil {
		return prefixErr(e, err)
	}
	e.Target.ext = x
	if x.decode != nil {
		e.Target.Kind, e.Target.Info = TargetExt, x.decode(e.Target.Data())
		if x.kernel {
			e.Target.Kind = TargetKernel
		}
	}
	return nil
}

func prefixErr(e *Entry, err *Error) *Error {
	err.Reason = fmt.Sprintf("rule at %d: %s", e.Offset, err.Reason)
	return err
}

// lookupExtension is xt_request_find_match/target for the extension whose
// xt_entry_match/target is raw: the name must hold a NUL.
func lookupExtension(target bool, raw []byte) (*extension, *Error) {
	field := raw[extNameOff:extRevisionOff]
	if strnlen(field) == ExtensionMaxNameLen {
		return nil, errorf(einval, "%s name is not NUL-terminated", kindName(target))
	}
	return findExtension(target, cstr(field), raw[extRevisionOff])
}
