//go:build vmguest

package badinput

import (
	"bytes"
	"slices"
	"syscall"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// bcase is one malformed (or, for the controls, valid) setsockopt, built
// from the table that is installed when it is sent.
type bcase struct {
	name string
	opt  int // gt.SetReplace or gt.SetAddCounters
	// want is ip_tables' answer. The test checks it, so that a case
	// reaches the check its name promises; bpfilter's answer is compared
	// with what ip_tables really answered.
	want syscall.Errno
	// same: if accepted, the table must be exactly as before (a
	// control); otherwise an accepted call's result is compared between
	// the backends, and the table is put back.
	same  bool
	build func(t *table, ctr uintptr) call
}

const (
	ok     = syscall.Errno(0)
	einval = syscall.EINVAL
	efault = syscall.EFAULT
	enomem = syscall.ENOMEM
	enoent = syscall.ENOENT
	eagain = syscall.EAGAIN
	eloop  = syscall.ELOOP
	eproto = syscall.EPROTOTYPE
)

// rep is a SET_REPLACE case: the valid blob of the table, changed by f.
func rep(name string, want syscall.Errno, f func(r *replace, t *table)) bcase {
	return bcase{name: name, opt: gt.SetReplace, want: want, build: func(t *table, ctr uintptr) call {
		r := t.replaceOf(ctr)
		f(r, t)
		return withData(r.bytes())
	}}
}

// repCall is a SET_REPLACE case that also decides how the blob is passed.
func repCall(name string, want syscall.Errno, f func(b []byte, t *table) call) bcase {
	return bcase{name: name, opt: gt.SetReplace, want: want, build: func(t *table, ctr uintptr) call {
		return f(t.replaceOf(ctr).bytes(), t)
	}}
}

// ctrs is a SET_ADD_COUNTERS case.
func ctrs(name string, want syscall.Errno, f func(t *table) call) bcase {
	return bcase{name: name, opt: gt.SetAddCounters, want: want, build: func(t *table, _ uintptr) call {
		return f(t)
	}}
}

func same(c bcase) bcase { c.same = true; return c }

// validReplace is the positive control: the installed table, as it is.
var validReplace = same(rep("valid: the table as it is", ok, func(r *replace, t *table) {}))

// name32 is a table name that fills all 32 bytes: ip_tables sees its
// first 31.
func name32(prefix string) []byte {
	b := bytes.Repeat([]byte{'x'}, tableNameLen)
	copy(b, prefix)
	return b
}

// nameWithTail is "filter", its NUL, then bytes that are not NUL up to
// the end of the 32 bytes: still the filter table.
func nameWithTail() []byte {
	b := bytes.Repeat([]byte{'Z'}, tableNameLen)
	copy(b, "filter\x00")
	return b
}

// conditional makes e match only destination 1.1.1.1.
func conditional(r *replace, e entry) {
	r.u32(e.off+ipDst, 0x01010101)
	r.u32(e.off+ipDmsk, 0xffffffff)
}

var cases = []bcase{
	validReplace,
	same(rep("valid: name with bytes after its NUL", ok, func(r *replace, t *table) { r.nameBytes = nameWithTail() })),
	same(repCall("valid: optlen longer than the blob", ok, func(b []byte, t *table) call {
		return withData(append(b, bytes.Repeat([]byte{0xa5}, 64)...))
	})),
	same(rep("valid: counters pointer NULL", ok, func(r *replace, t *table) { r.counters = 0 })),
	same(rep("valid: counters pointer to kernel memory", ok, func(r *replace, t *table) { r.counters = 0xffffffff81000000 })),
	same(rep("valid: garbage hook_entry and underflow of unused hooks", ok, func(r *replace, t *table) {
		r.hookEntry[0], r.underflow[0] = 12345, 7
		r.hookEntry[4], r.underflow[4] = 1, 0xfffffff0
	})),

	// Lengths.
	repCall("optlen 0", einval, func(b []byte, t *table) call { return withLen(nil, 0) }),
	repCall("optlen 0, optval NULL", einval, func(b []byte, t *table) call { return call{ptr: ptrNull} }),
	repCall("optlen 1", einval, func(b []byte, t *table) call { return withData(b[:1]) }),
	repCall("optlen shorter than ipt_replace", einval, func(b []byte, t *table) call { return withData(b[:replaceSize-1]) }),
	repCall("optlen ipt_replace only", einval, func(b []byte, t *table) call { return withData(b[:replaceSize]) }),
	repCall("optlen one short of ipt_replace+size", einval, func(b []byte, t *table) call { return withData(b[:len(b)-1]) }),
	repCall("optlen half of the entries", einval, func(b []byte, t *table) call { return withData(b[:replaceSize+int(t.size)/2]) }),
	repCall("optval NULL", efault, func(b []byte, t *table) call { return call{optlen: len(b), lenSet: true, ptr: ptrNull} }),
	repCall("optval unmapped", efault, func(b []byte, t *table) call { return call{optlen: len(b), lenSet: true, ptr: ptrUnmapped} }),
	repCall("memory ends inside ipt_replace", efault, func(b []byte, t *table) call { return withLen(b[:50], len(b)) }),
	repCall("memory ends inside the entries", efault, func(b []byte, t *table) call { return withLen(b[:len(b)-100], len(b)) }),

	// size.
	rep("size larger than optlen allows", einval, func(r *replace, t *table) { r.size += 8 }),
	rep("size 0xffffffff", einval, func(r *replace, t *table) { r.size = 0xffffffff }),
	repCall("size 512 MiB, optlen to match", enomem, func(b []byte, t *table) call {
		le.PutUint32(b[40:], 512<<20)
		return withLen(b, replaceSize+512<<20)
	}),
	repCall("size 0x7fffff00, optlen to match", enomem, func(b []byte, t *table) call {
		le.PutUint32(b[40:], 0x7fffff00)
		return withLen(b, replaceSize+0x7fffff00)
	}),
	repCall("size 16 MiB, optlen to match, memory ends after the entries", efault, func(b []byte, t *table) call {
		le.PutUint32(b[40:], 16<<20)
		return withLen(b, replaceSize+16<<20)
	}),
	rep("size 0", einval, func(r *replace, t *table) { r.size = 0 }),
	rep("size larger than the entries, 112 zero bytes after them", einval, func(r *replace, t *table) {
		r.insert(len(r.entries), make([]byte, entrySize))
	}),
	rep("size larger than the entries, 256 zero bytes after them", einval, func(r *replace, t *table) {
		r.insert(len(r.entries), make([]byte, 256))
	}),
	rep("size one byte smaller", einval, func(r *replace, t *table) { r.size-- }),
	rep("size ends inside the last entry", einval, func(r *replace, t *table) { r.size -= 32 }),
	rep("size drops the trailing ERROR entry, num_entries as before", einval, func(r *replace, t *table) {
		r.cut(t.trailer().off, len(r.entries))
	}),
	rep("missing trailing ERROR entry", ok, func(r *replace, t *table) {
		r.cut(t.trailer().off, len(r.entries))
		r.numEntries--
	}),

	// num_entries.
	rep("num_entries one more", einval, func(r *replace, t *table) { r.numEntries++ }),
	rep("num_entries one less", einval, func(r *replace, t *table) { r.numEntries-- }),
	rep("num_entries 0", einval, func(r *replace, t *table) { r.numEntries = 0 }),
	rep("num_entries 0xffffffff", enomem, func(r *replace, t *table) { r.numEntries = 0xffffffff }),
	rep("num_entries just over the offsets limit", enomem, func(r *replace, t *table) { r.numEntries = 512<<20/4 + 1 }),

	// Hooks.
	rep("valid_hooks 0", einval, func(r *replace, t *table) { r.validHooks = 0 }),
	rep("valid_hooks without OUTPUT", einval, func(r *replace, t *table) { r.validHooks &^= 1 << nfInetOut }),
	rep("valid_hooks with PREROUTING", einval, func(r *replace, t *table) {
		r.validHooks |= 1
		r.hookEntry[0], r.underflow[0] = 0, 0
	}),
	rep("valid_hooks with a bit past the hooks", einval, func(r *replace, t *table) { r.validHooks |= 1 << 5 }),
	rep("hook_entry INPUT at size", einval, func(r *replace, t *table) { r.hookEntry[nfInetLocal] = r.size }),
	rep("hook_entry OUTPUT 0xffffffff", einval, func(r *replace, t *table) { r.hookEntry[nfInetOut] = 0xffffffff }),
	rep("hook_entry FORWARD misaligned", einval, func(r *replace, t *table) { r.hookEntry[nfInetFwd] += 4 }),
	rep("hook_entry FORWARD inside an entry", einval, func(r *replace, t *table) { r.hookEntry[nfInetFwd] += 8 }),
	rep("hook_entry FORWARD same as INPUT", einval, func(r *replace, t *table) { r.hookEntry[nfInetFwd] = r.hookEntry[nfInetLocal] }),
	rep("hook_entry INPUT and OUTPUT swapped", einval, func(r *replace, t *table) {
		r.hookEntry[nfInetLocal], r.hookEntry[nfInetOut] = r.hookEntry[nfInetOut], r.hookEntry[nfInetLocal]
	}),
	rep("underflow INPUT past the end", einval, func(r *replace, t *table) { r.underflow[nfInetLocal] = r.size + 64 }),
	rep("underflow FORWARD misaligned", einval, func(r *replace, t *table) { r.underflow[nfInetFwd] -= 4 }),
	rep("underflow INPUT at a conditional rule", einval, func(r *replace, t *table) { r.underflow[nfInetLocal] = r.hookEntry[nfInetLocal] }),
	rep("underflow OUTPUT at a user chain's RETURN", einval, func(r *replace, t *table) { r.underflow[nfInetOut] = uint32(t.lastOf("alpha").off) }),
	rep("underflow FORWARD same as INPUT", einval, func(r *replace, t *table) { r.underflow[nfInetFwd] = r.underflow[nfInetLocal] }),
	rep("policy conditional", einval, func(r *replace, t *table) { conditional(r, t.lastOf("OUTPUT")) }),
	rep("policy RETURN", einval, func(r *replace, t *table) { r.verdict(t.lastOf("INPUT"), verdictRet) }),
	rep("policy QUEUE", einval, func(r *replace, t *table) { r.verdict(t.lastOf("FORWARD"), verdictQueue) }),
	rep("policy jumps to a user chain", einval, func(r *replace, t *table) {
		r.verdict(t.lastOf("OUTPUT"), int32(t.firstRule("beta").off))
	}),

	// Entry offsets.
	rep("next_offset 0", einval, func(r *replace, t *table) { r.u16(t.ents[0].off+eNextOff, 0) }),
	rep("next_offset 112", einval, func(r *replace, t *table) { r.u16(t.ents[0].off+eNextOff, entrySize) }),
	rep("next_offset one less", einval, func(r *replace, t *table) {
		e := t.ents[1]
		r.u16(e.off+eNextOff, uint16(e.nextOff-1))
	}),
	rep("next_offset spans two entries", einval, func(r *replace, t *table) {
		e := t.ents[0]
		r.u16(e.off+eNextOff, uint16(e.nextOff+t.ents[1].nextOff))
	}),
	rep("next_offset 0xffff", einval, func(r *replace, t *table) { r.u16(t.ents[2].off+eNextOff, 0xffff) }),
	rep("next_offset of the last entry past the end", einval, func(r *replace, t *table) {
		e := t.trailer()
		r.u16(e.off+eNextOff, uint16(e.nextOff+8))
	}),
	rep("target_offset past next_offset", einval, func(r *replace, t *table) {
		e := t.ents[0]
		r.u16(e.off+eTargetOff, uint16(e.nextOff+8))
	}),
	rep("target_offset at next_offset", einval, func(r *replace, t *table) {
		e := t.ents[0]
		r.u16(e.off+eTargetOff, uint16(e.nextOff))
	}),
	rep("target_offset inside ipt_entry", einval, func(r *replace, t *table) { r.u16(t.ents[0].off+eTargetOff, entrySize-8) }),
	rep("target_offset misaligned", einval, func(r *replace, t *table) { r.u16(t.ents[0].off+eTargetOff, entrySize+4) }),
	rep("target_offset leaves a match too short", einval, func(r *replace, t *table) {
		e := t.withMatch()
		r.u16(e.off+eTargetOff, uint16(e.targetOff-8))
	}),
	rep("target_size 0", einval, func(r *replace, t *table) { r.u16(t.ents[0].off+t.ents[0].targetOff, 0) }),
	rep("target_size 31", einval, func(r *replace, t *table) { r.u16(t.ents[0].off+t.ents[0].targetOff, targetHdrSize-1) }),
	rep("target_size past next_offset", einval, func(r *replace, t *table) { r.u16(t.ents[0].off+t.ents[0].targetOff, standardSize+8) }),
	rep("misaligned entries: 4 bytes after a chain head", einval, func(r *replace, t *table) {
		h := t.chainHead("alpha")
		r.u16(h.off+eNextOff, uint16(h.nextOff+4))
		r.insert(h.off+h.nextOff, make([]byte, 4))
	}),
	rep("ip flags unknown bit", einval, func(r *replace, t *table) { r.u8(t.ents[0].off+ipFlags, 0x04) }),
	rep("ip invflags unknown bit", einval, func(r *replace, t *table) { r.u8(t.ents[0].off+ipInvflags, 0x80) }),

	// Matches and targets.
	rep("match_size 0", einval, func(r *replace, t *table) { r.u16(t.withMatch().matches[0]+tSize, 0) }),
	rep("match_size past the target", einval, func(r *replace, t *table) {
		e := t.withMatch()
		r.u16(e.matches[0]+tSize, uint16(e.targetOff-entrySize+8))
	}),
	rep("match_size misaligned", einval, func(r *replace, t *table) {
		m := t.withMatch().matches[0]
		r.u16(m+tSize, le.Uint16(r.entries[m:])-4)
	}),
	rep("unknown match", enoent, func(r *replace, t *table) {
		m := t.withMatch().matches[0]
		copy(r.entries[m+tName:m+tName+29], "nosuchmatch\x00")
	}),
	rep("match name without NUL", einval, func(r *replace, t *table) {
		m := t.withMatch().matches[0]
		copy(r.entries[m+tName:m+tName+29], bytes.Repeat([]byte{'t'}, 29))
	}),
	// tcp is an IPv4 match: an unknown revision is not found at all
	// (xt_find_match searches NFPROTO_UNSPEC last, where there is no
	// tcp); comment is a family-independent match of revision 0 only.
	rep("tcp match revision 9", enoent, func(r *replace, t *table) { r.u8(t.withMatch().matches[0]+tRevision, 9) }),
	rep("comment match revision 1", eproto, func(r *replace, t *table) {
		m := t.withMatch().matches[0]
		copy(r.entries[m+tName:m+tName+29], "comment\x00")
		r.u8(m+tRevision, 1)
	}),
	rep("tcp match on a udp rule", einval, func(r *replace, t *table) { r.u16(t.withMatch().off+ipProto, 17) }),
	rep("tcp match with unknown invflags", einval, func(r *replace, t *table) {
		r.u8(t.withMatch().matches[0]+tData+11, 0xff)
	}),
	rep("unknown target", enoent, func(r *replace, t *table) {
		e := t.lastOf("OUTPUT")
		e = t.ents[indexOf(t, e)-1] // OUTPUT's DROP rule
		copy(r.entries[e.off+e.targetOff+tName:], "NOSUCHTARGET\x00")
	}),
	rep("target name without NUL", einval, func(r *replace, t *table) {
		e := t.ents[indexOf(t, t.lastOf("OUTPUT"))-1]
		copy(r.entries[e.off+e.targetOff+tName:], bytes.Repeat([]byte{'T'}, 29))
	}),
	rep("standard target revision 1", enoent, func(r *replace, t *table) {
		e := t.ents[indexOf(t, t.lastOf("OUTPUT"))-1]
		r.u8(e.off+e.targetOff+tRevision, 1)
	}),
	rep("ERROR target name without NUL", einval, func(r *replace, t *table) {
		h := t.chainHead("alpha")
		copy(r.entries[h.off+h.targetOff+tData:h.off+h.targetOff+tData+30], bytes.Repeat([]byte{'E'}, 30))
	}),
	rep("ERROR target_size 56", einval, func(r *replace, t *table) {
		h := t.chainHead("beta")
		r.u16(h.off+h.targetOff+tSize, 56)
	}),

	// Verdicts and jumps.
	rep("verdict 0", einval, func(r *replace, t *table) { r.verdict(t.ents[indexOf(t, t.lastOf("OUTPUT"))-1], 0) }),
	rep("verdict NF_STOLEN", einval, func(r *replace, t *table) { r.verdict(t.ents[indexOf(t, t.lastOf("OUTPUT"))-1], -1-2) }),
	rep("verdict NF_STOP", einval, func(r *replace, t *table) { r.verdict(t.ents[indexOf(t, t.lastOf("OUTPUT"))-1], -1-5) }),
	rep("verdict INT_MIN", einval, func(r *replace, t *table) { r.verdict(t.ents[indexOf(t, t.lastOf("OUTPUT"))-1], -1<<31) }),
	rep("verdict NF_QUEUE in a rule", ok, func(r *replace, t *table) {
		r.verdict(t.ents[indexOf(t, t.lastOf("OUTPUT"))-1], verdictQueue)
	}),
	rep("jump past the end", eloop, func(r *replace, t *table) { r.verdict(t.jump("INPUT"), int32(t.size)) }),
	rep("jump to 0x7fffffff", eloop, func(r *replace, t *table) { r.verdict(t.jump("INPUT"), 0x7fffffff) }),
	rep("jump inside an entry", eloop, func(r *replace, t *table) { r.verdict(t.jump("INPUT"), int32(t.firstRule("alpha").off+8)) }),
	rep("jump misaligned", eloop, func(r *replace, t *table) { r.verdict(t.jump("INPUT"), int32(t.firstRule("alpha").off+4)) }),
	rep("jump to the trailing ERROR entry", eloop, func(r *replace, t *table) { r.verdict(t.jump("INPUT"), int32(t.trailer().off)) }),
	rep("jump to itself", eloop, func(r *replace, t *table) {
		j := t.jump("alpha")
		r.verdict(j, int32(j.off))
	}),
	rep("jump loop between two user chains", eloop, func(r *replace, t *table) {
		r.verdict(t.firstRule("beta"), int32(t.firstRule("alpha").off))
	}),
	// A jump to offset 0 is verdict 0, which verdict_ok refuses before
	// any loop is looked for.
	rep("jump to offset 0, INPUT's first rule", einval, func(r *replace, t *table) {
		r.verdict(t.jump("alpha"), int32(t.hookEntry[nfInetLocal]))
	}),
	// Not a loop: INPUT's second rule is not on the path that leads to
	// the jump.
	rep("jump from a user chain to INPUT's second rule", ok, func(r *replace, t *table) {
		r.verdict(t.jump("alpha"), int32(t.ents[1].off))
	}),
	rep("jump to a chain head", ok, func(r *replace, t *table) {
		r.verdict(t.jump("alpha"), int32(t.chainHead("beta").off))
	}),
	// Falling off the end of a chain into the next one is no error to
	// ip_tables; falling off the last one into the trailing ERROR entry
	// and past the end is.
	rep("user chain ends in a conditional RETURN, falls into the next chain", ok, func(r *replace, t *table) {
		conditional(r, t.lastOf("beta"))
	}),
	rep("last user chains end in a conditional RETURN", eloop, func(r *replace, t *table) {
		conditional(r, t.lastOf("beta"))
		conditional(r, t.lastOf("unused"))
	}),
	// Where no hook leads, ip_tables looks for no loop and follows no
	// jump.
	rep("loop in a chain nothing jumps to", ok, func(r *replace, t *table) {
		e := t.firstRule("unused")
		r.verdict(e, int32(e.off))
	}),
	rep("jump past the end in a chain nothing jumps to", ok, func(r *replace, t *table) {
		r.verdict(t.firstRule("unused"), int32(t.size)+1000)
	}),
	rep("jump inside an entry in a chain nothing jumps to", ok, func(r *replace, t *table) {
		r.verdict(t.firstRule("unused"), int32(t.firstRule("alpha").off+4))
	}),
	rep("rule after the trailing ERROR entry", ok, func(r *replace, t *table) {
		e := t.firstRule("unused")
		r.insert(len(r.entries), t.entries0()[e.off:e.off+e.nextOff])
		r.numEntries++
	}),
	rep("rule turned into an ERROR entry inside INPUT", ok, func(r *replace, t *table) {
		e := t.withMatch()
		clear(r.entries[e.off+entrySize : e.off+e.nextOff])
		r.u16(e.off+eTargetOff, entrySize)
		r.u16(e.off+entrySize+tSize, errorSize)
		copy(r.entries[e.off+entrySize+tName:], "ERROR")
		copy(r.entries[e.off+entrySize+tData:], "inside")
	}),

	// Bytes that ip_tables keeps, drops or ignores: what GET_ENTRIES
	// shows afterwards is compared.
	rep("garbage nfcache", ok, func(r *replace, t *table) {
		for _, e := range t.ents {
			r.u32(e.off+84, 0xdeadbeef)
		}
	}),
	same(rep("valid: garbage comefrom and counters in the entries", ok, func(r *replace, t *table) {
		for _, e := range t.ents {
			r.u32(e.off+eComefrom, 0xffffffff)
			r.u32(e.off+eCounters, 0x12345678)
			r.u32(e.off+eCounters+12, 0x9abcdef0)
		}
	})),
	rep("garbage in the standard targets' padding", ok, func(r *replace, t *table) {
		for _, e := range t.ents {
			if e.target == "" {
				r.u32(e.off+e.targetOff+tData+4, 0xa5a5a5a5)
			}
		}
	}),
	rep("garbage after the ERROR targets' names", ok, func(r *replace, t *table) {
		for _, e := range t.ents {
			if e.target == "ERROR" {
				tg := r.entries[e.off+e.targetOff+tData : e.off+e.nextOff]
				for i := len(e.errName) + 1; i < len(tg); i++ {
					tg[i] = 'g'
				}
			}
		}
	}),
	rep("garbage after the names of matches and targets", ok, func(r *replace, t *table) {
		for _, e := range t.ents {
			for _, m := range append(slices.Clone(e.matches), e.off+e.targetOff) {
				name := r.entries[m+tName : m+tName+29]
				for i := bytes.IndexByte(name, 0) + 1; i < len(name); i++ {
					name[i] = 'n'
				}
			}
		}
	}),
	rep("garbage in the tcp match's padding", ok, func(r *replace, t *table) {
		m := t.withMatch().matches[0]
		r.u32(m+tData+12, 0x5a5a5a5a)
	}),
	rep("interface name without NUL", ok, func(r *replace, t *table) {
		e := t.jump("FORWARD")
		copy(r.entries[e.off+32:e.off+48], "eeeeeeeeeeeeeeee")
		copy(r.entries[e.off+64:e.off+80], bytes.Repeat([]byte{0xff}, 16))
	}),
	rep("user chain ends in a jump back", eloop, func(r *replace, t *table) {
		r.verdict(t.lastOf("beta"), int32(t.firstRule("alpha").off))
	}),

	// num_counters.
	rep("num_counters 0", einval, func(r *replace, t *table) { r.numCounters = 0 }),
	rep("num_counters one more than the table has", eagain, func(r *replace, t *table) { r.numCounters++ }),
	rep("num_counters one less than the table has", eagain, func(r *replace, t *table) { r.numCounters-- }),
	rep("num_counters 0x07ffffff", enomem, func(r *replace, t *table) { r.numCounters = 0x07ffffff }),
	rep("num_counters 0x7fffffff", enomem, func(r *replace, t *table) { r.numCounters = 0x7fffffff }),
	rep("num_counters 0xffffffff", enomem, func(r *replace, t *table) { r.numCounters = 0xffffffff }),
	rep("num_counters just over the counters limit", enomem, func(r *replace, t *table) { r.numCounters = 512<<20/counterSize + 1 }),

	// Tables bpfilter does not serve: ip_tables answers.
	rep("table nosuch", enoent, func(r *replace, t *table) { r.name = "nosuch" }),
	rep("table FILTER", enoent, func(r *replace, t *table) { r.name = "FILTER" }),
	rep("table name of 32 bytes", enoent, func(r *replace, t *table) { r.nameBytes = name32("filter") }),
	rep("table name empty", enoent, func(r *replace, t *table) { r.name = "" }),
	rep("table nosuch, num_counters 0", einval, func(r *replace, t *table) { r.name, r.numCounters = "nosuch", 0 }),
	rep("table nosuch, next_offset 0", einval, func(r *replace, t *table) {
		r.name = "nosuch"
		r.u16(t.ents[0].off+eNextOff, 0)
	}),

	// SET_ADD_COUNTERS.
	same(ctrs("counters: valid, zero", ok, func(t *table) call { return withData(countersInfo("filter", t.num, int(t.num))) })),
	same(ctrs("counters: valid, name with bytes after its NUL", ok, func(t *table) call {
		b := countersInfo("filter", t.num, int(t.num))
		copy(b, nameWithTail())
		return withData(b)
	})),
	ctrs("counters: valid, 1 2 3 ...", ok, func(t *table) call {
		b := countersInfo("filter", t.num, int(t.num))
		for i := 0; i < int(t.num); i++ {
			le.PutUint64(b[countersInfoSize+i*counterSize:], uint64(i+1))
			le.PutUint64(b[countersInfoSize+i*counterSize+8:], uint64(100*(i+1)))
		}
		return withData(b)
	}),
	ctrs("counters: optlen 0", einval, func(t *table) call { return withLen(nil, 0) }),
	ctrs("counters: optlen 0, optval NULL", einval, func(t *table) call { return call{ptr: ptrNull} }),
	ctrs("counters: optlen 39", einval, func(t *table) call { return withData(countersInfo("filter", t.num, 0)[:39]) }),
	ctrs("counters: optlen 40", einval, func(t *table) call { return withData(countersInfo("filter", t.num, 0)) }),
	ctrs("counters: optlen one short", einval, func(t *table) call {
		b := countersInfo("filter", t.num, int(t.num))
		return withData(b[:len(b)-1])
	}),
	ctrs("counters: optlen one over", einval, func(t *table) call {
		return withData(append(countersInfo("filter", t.num, int(t.num)), 0))
	}),
	ctrs("counters: one counter too many for num_counters", einval, func(t *table) call {
		return withData(countersInfo("filter", t.num, int(t.num)+1))
	}),
	ctrs("counters: num_counters one less", einval, func(t *table) call {
		return withData(countersInfo("filter", t.num-1, int(t.num)-1))
	}),
	ctrs("counters: num_counters one more", einval, func(t *table) call {
		return withData(countersInfo("filter", t.num+1, int(t.num)+1))
	}),
	ctrs("counters: num_counters 0, one counter", einval, func(t *table) call { return withData(countersInfo("filter", 0, 1)) }),
	ctrs("counters: num_counters 0x7fffffff", einval, func(t *table) call {
		return withData(countersInfo("filter", 0x7fffffff, int(t.num)))
	}),
	ctrs("counters: num_counters 0xffffffff", einval, func(t *table) call {
		return withData(countersInfo("filter", 0xffffffff, int(t.num)))
	}),
	ctrs("counters: num_counters 0x10000000, optlen 40 + 0", einval, func(t *table) call {
		return withData(countersInfo("filter", 0x10000000, 0))
	}),
	ctrs("counters: num_counters 0x10000001, optlen 40 + 16", einval, func(t *table) call {
		return withData(countersInfo("filter", 0x10000001, 1))
	}),
	ctrs("counters: num_counters 1<<20, optlen to match, memory for the table's only", efault, func(t *table) call {
		b := countersInfo("filter", 1<<20, int(t.num))
		return withLen(b, countersInfoSize+counterSize<<20)
	}),
	ctrs("counters: optval NULL", efault, func(t *table) call {
		return call{optlen: countersInfoSize + int(t.num)*counterSize, lenSet: true, ptr: ptrNull}
	}),
	ctrs("counters: optval unmapped", efault, func(t *table) call {
		return call{optlen: countersInfoSize + int(t.num)*counterSize, lenSet: true, ptr: ptrUnmapped}
	}),
	ctrs("counters: memory ends inside the header", efault, func(t *table) call {
		b := countersInfo("filter", t.num, int(t.num))
		return withLen(b[:20], len(b))
	}),
	ctrs("counters: memory ends inside the counters", efault, func(t *table) call {
		b := countersInfo("filter", t.num, int(t.num))
		return withLen(b[:len(b)-8], len(b))
	}),
	ctrs("counters: table nosuch", enoent, func(t *table) call { return withData(countersInfo("nosuch", t.num, int(t.num))) }),
	ctrs("counters: table name of 32 bytes", enoent, func(t *table) call {
		b := countersInfo("", t.num, int(t.num))
		copy(b, name32("filter"))
		return withData(b)
	}),
	ctrs("counters: table nosuch, optlen one short", einval, func(t *table) call {
		b := countersInfo("nosuch", t.num, int(t.num))
		return withData(b[:len(b)-1])
	}),
}

func indexOf(t *table, e entry) int {
	for i, x := range t.ents {
		if x.off == e.off {
			return i
		}
	}
	panic("no such entry")
}
