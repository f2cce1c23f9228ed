package ipt

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/ipt/kerneltest"
)

// baseBuilder is a table that uses every accepted extension, jumps, a
// nested user chain and RETURNs; libiptc would lay it out the same way.
//
//	INPUT:   -p tcp --dport 22 -j ACCEPT; -j a; policy ACCEPT
//	FORWARD: policy DROP
//	OUTPUT:  -p udp --dport 53 -m comment --comment dns -j DROP; policy ACCEPT
//	a:       -p icmp --icmp-type 8 -j b
//	b:       -p tcp -m multiport --dports 1,2:5 -j DROP; -m iprange --src-range 10.0.0.1-10.0.0.9 -j RETURN
func baseBuilder(t testing.TB, edit func(b *Builder)) []byte {
	t.Helper()
	b := NewFilterBuilder()
	must(t, b.SetPolicy("FORWARD", VerdictDrop, Counters{}))
	must(t, b.NewChain("a"))
	must(t, b.NewChain("b"))
	must(t, b.Append("INPUT", RuleSpec{
		IP:      IP{Proto: ProtoTCP},
		Matches: []Match{NewMatch(&TCP{SrcPorts: anyPorts(), DstPorts: [2]uint16{22, 22}})},
		Jump:    "ACCEPT",
	}))
	must(t, b.Append("INPUT", RuleSpec{Jump: "a"}))
	must(t, b.Append("OUTPUT", RuleSpec{
		IP:      IP{Proto: ProtoUDP},
		Matches: []Match{NewMatch(&UDP{SrcPorts: anyPorts(), DstPorts: [2]uint16{53, 53}}), NewMatch(&Comment{Text: "dns"})},
		Jump:    "DROP",
	}))
	must(t, b.Append("a", RuleSpec{
		IP:      IP{Proto: ProtoICMP},
		Matches: []Match{NewMatch(&ICMP{Type: 8, Code: [2]uint8{0, 0xFF}})},
		Jump:    "b",
	}))
	mp := &Multiport{Flags: MultiportDestination, Count: 3, Ports: [MultiPorts]uint16{1, 2, 5}, PFlags: [MultiPorts]uint8{0, 1}}
	must(t, b.Append("b", RuleSpec{IP: IP{Proto: ProtoTCP}, Matches: []Match{NewMatch(mp)}, Jump: "DROP"}))
	must(t, b.Append("b", RuleSpec{
		Matches: []Match{NewMatch(&IPRange{
			SrcMin: Inet4(netip.MustParseAddr("10.0.0.1")), SrcMax: Inet4(netip.MustParseAddr("10.0.0.9")), Flags: IPRangeSrc,
		})},
		Jump: "RETURN",
	}))
	if edit != nil {
		edit(b)
	}
	return mustReplace(t, b, 4)
}

// Entry numbers in the base table.
const (
	baseInputTCP  = 0
	baseInputJump = 1
	baseInputPol  = 2
	baseForward   = 3
	baseOutputUDP = 4
	baseOutputPol = 5
	baseAHead     = 6
	baseAICMP     = 7
	baseAReturn   = 8
	baseBHead     = 9
	baseBMulti    = 10
	baseBRange    = 11
	baseBReturn   = 12
	baseEnd       = 13
)

// entryAt is the offset in blob (header included) of entry i.
func entryAt(blob []byte, i int) int {
	off := ReplaceSize
	for ; i > 0; i-- {
		off += int(binary.LittleEndian.Uint16(blob[off+entryNextOffOff:]))
	}
	return off
}

func targetAt(blob []byte, i int) int {
	e := entryAt(blob, i)
	return e + int(binary.LittleEndian.Uint16(blob[e+entryTargetOffOff:]))
}

func put16(b []byte, off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
func put32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }

// patch returns the base blob changed by f.
func patch(f func(b []byte)) func(t testing.TB) []byte {
	return func(t testing.TB) []byte {
		b := baseBuilder(t, nil)
		f(b)
		return b
	}
}

// rawMatch is a match with the given name, revision and data, laid out
// without any check.
func rawMatch(name string, rev uint8, data []byte) Match {
	raw := make([]byte, EntryMatchSize+len(data))
	put16(raw, 0, uint16(len(raw)))
	copy(raw[extNameOff:extRevisionOff], name)
	raw[extRevisionOff] = rev
	copy(raw[EntryMatchSize:], data)
	return Match{Name: name, Revision: rev, Raw: raw}
}

func rawTarget(name string, rev uint8, data []byte) *Target {
	raw := make([]byte, EntryTargetSize+len(data))
	put16(raw, 0, uint16(len(raw)))
	copy(raw[extNameOff:extRevisionOff], name)
	raw[extRevisionOff] = rev
	copy(raw[EntryTargetSize:], data)
	return &Target{Name: name, Revision: rev, Raw: raw}
}

// withRule returns the base table with one more rule at the end of INPUT.
func withRule(r RuleSpec) func(t testing.TB) []byte {
	return func(t testing.TB) []byte {
		return baseBuilder(t, func(b *Builder) { must(t, b.Append("INPUT", r)) })
	}
}

func tcpMatch() Match { return NewMatch(&TCP{SrcPorts: anyPorts(), DstPorts: anyPorts()}) }

type errnoCase struct {
	name  string
	blob  func(t testing.TB) []byte
	errno unix.Errno // 0: accepted
	// kernelAccepts marks refusals that are bpfilter's own: the kernel has
	// the extension (and accepts the blob).
	kernelAccepts bool
	// kernelOverride: the kernel's IPT_SO_SET_REPLACE gives kernelErrno,
	// because it fails after translate_table.
	kernelOverride bool
	kernelErrno    unix.Errno
}

// errnoCases are the blobs and the errno ip_tables (Linux 6.1) gives each;
// the comment names the check that refuses it.
var errnoCases = []errnoCase{
	{name: "base table is valid", blob: patch(func([]byte) {})},
	// do_replace
	{name: "shorter than ipt_replace", errno: unix.EINVAL, // len < sizeof(tmp)
		blob: func(t testing.TB) []byte { return baseBuilder(t, nil)[:ReplaceSize-1] }},
	{name: "num_counters overflow", errno: unix.ENOMEM, // num_counters >= INT_MAX / sizeof(struct xt_counters)
		blob: patch(func(b []byte) { put32(b, 84, intMax/CountersSize) })},
	{name: "num_counters zero", errno: unix.EINVAL, // num_counters == 0
		blob: patch(func(b []byte) { put32(b, 84, 0) })},
	{name: "size beyond optlen", errno: unix.EINVAL, // (u64)len < (u64)tmp.size + sizeof(tmp)
		blob: patch(func(b []byte) { put32(b, 40, binary.LittleEndian.Uint32(b[40:])+1) })},
	{name: "size 4 GiB", errno: unix.EINVAL, // (u64)len < (u64)tmp.size + sizeof(tmp): no wrap-around
		blob: patch(func(b []byte) { put32(b, 40, 0xFFFFFFFF) })},
	// translate_table, xt_alloc_entry_offsets
	{name: "num_entries huge", errno: unix.ENOMEM, // size > XT_MAX_TABLE_SIZE / sizeof(unsigned int)
		blob: patch(func(b []byte) { put32(b, 36, 0xFFFFFFFF) })},
	// check_entry_size_and_hooks
	{name: "size cuts the last entry", errno: unix.EINVAL, // e + next_offset > limit
		blob: func(t testing.TB) []byte {
			b := baseBuilder(t, nil)
			put32(b, 40, binary.LittleEndian.Uint32(b[40:])-8)
			return b[:len(b)-8]
		}},
	{name: "trailing bytes after the last entry", errno: unix.EINVAL, // e + sizeof(struct ipt_entry) >= limit
		blob: func(t testing.TB) []byte {
			b := append(baseBuilder(t, nil), make([]byte, 112)...)
			put32(b, 40, binary.LittleEndian.Uint32(b[40:])+112)
			return b
		}},
	{name: "misaligned entry", errno: unix.EINVAL, // (unsigned long)e % __alignof__(struct ipt_entry)
		blob: withRule(RuleSpec{Target: rawTarget("nosuch", 0, make([]byte, 12))})},
	{name: "next_offset too small", errno: unix.EINVAL, // next_offset < sizeof(ipt_entry) + sizeof(xt_entry_target)
		blob: patch(func(b []byte) { put16(b, entryAt(b, 0)+entryNextOffOff, EntrySize+EntryTargetSize-8) })},
	{name: "next_offset zero", errno: unix.EINVAL,
		blob: patch(func(b []byte) { put16(b, entryAt(b, baseOutputUDP)+entryNextOffOff, 0) })},
	{name: "unknown ip flags", errno: unix.EINVAL, // ip_checkentry: flags & ~IPT_F_MASK
		blob: patch(func(b []byte) { b[entryAt(b, 0)+82] = 0x04 })},
	{name: "unknown ip invflags", errno: unix.EINVAL, // ip_checkentry: invflags & ~IPT_INV_MASK
		blob: patch(func(b []byte) { b[entryAt(b, 0)+83] = 0x80 })},
	// xt_check_entry_offsets
	{name: "target_offset inside ipt_entry", errno: unix.EINVAL, // target_offset < size_of_base_struct
		blob: patch(func(b []byte) { put16(b, entryAt(b, baseForward)+entryTargetOffOff, 104) })},
	{name: "target_offset leaves no room for a target", errno: unix.EINVAL, // target_offset + sizeof(*t) > next_offset
		blob: patch(func(b []byte) { put16(b, entryAt(b, baseForward)+entryTargetOffOff, 128) })},
	{name: "target_size too small", errno: unix.EINVAL, // t->u.target_size < sizeof(*t)
		blob: patch(func(b []byte) { put16(b, targetAt(b, baseForward), 24) })},
	{name: "target_size past next_offset", errno: unix.EINVAL, // target_offset + t->u.target_size > next_offset
		blob: patch(func(b []byte) { put16(b, targetAt(b, baseForward), 48) })},
	{name: "standard target with trailing bytes", errno: unix.EINVAL, // XT_ALIGN(target_offset + sizeof(*st)) != next_offset
		blob: withRule(RuleSpec{Target: rawTarget("", 0, make([]byte, 16))})},
	{name: "verdict NF_STOLEN", errno: unix.EINVAL, // verdict_ok
		blob: withRule(RuleSpec{Target: ptr(NewStandardTarget(-NFStolen - 1))})},
	{name: "verdict zero", errno: unix.EINVAL, // verdict_ok: 0 is no jump
		blob: withRule(RuleSpec{Target: ptr(NewStandardTarget(0))})},
	{name: "verdict below RETURN", errno: unix.EINVAL, // verdict_ok
		blob: withRule(RuleSpec{Target: ptr(NewStandardTarget(-6))})},
	{name: "ERROR target of the wrong size", errno: unix.EINVAL, // error_tg_ok: usersize != kernsize
		blob: withRule(RuleSpec{Target: rawTarget("ERROR", 0, make([]byte, 40))})},
	{name: "ERROR name without NUL", errno: unix.EINVAL, // error_tg_ok: strnlen(msg, msglen) == msglen
		blob: patch(func(b []byte) {
			tg := targetAt(b, baseEnd)
			copy(b[tg+EntryTargetSize:tg+EntryTargetSize+FunctionMaxNameLen], strings.Repeat("E", FunctionMaxNameLen))
		})},
	// xt_check_entry_match
	{name: "match_size too small", errno: unix.EINVAL, // pos->u.match_size < sizeof(struct xt_entry_match)
		blob: patch(func(b []byte) { put16(b, entryAt(b, 0)+EntrySize, 16) })},
	{name: "match_size past the target", errno: unix.EINVAL, // pos->u.match_size > length
		blob: patch(func(b []byte) { put16(b, entryAt(b, 0)+EntrySize, 56) })},
	{name: "match misaligned", errno: unix.EINVAL, // (unsigned long)pos % alignment
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoTCP}, Matches: []Match{rawMatch("tcp", 0, make([]byte, 12)), tcpMatch()}, Jump: "DROP"})},
	{name: "room for less than a match", errno: unix.EINVAL, // length < (int)sizeof(struct xt_entry_match)
		blob: withRule(RuleSpec{Matches: []Match{{Raw: make([]byte, 16)}}, Jump: "DROP"})},
	// check_underflow
	{name: "policy is conditional", errno: unix.EINVAL,
		blob: patch(func(b []byte) { b[entryAt(b, baseForward)+80] = ProtoTCP })},
	{name: "policy is RETURN", errno: unix.EINVAL,
		blob: patch(func(b []byte) { put32(b, targetAt(b, baseForward)+EntryTargetSize, uint32(VerdictReturnU)) })},
	{name: "policy is QUEUE", errno: unix.EINVAL,
		blob: patch(func(b []byte) { put32(b, targetAt(b, baseForward)+EntryTargetSize, uint32(VerdictQueueU)) })},
	{name: "underflow at a user chain head", errno: unix.EINVAL,
		blob: patch(func(b []byte) { put32(b, 64+4*HookLocalOut, uint32(entryAt(b, baseAHead)-ReplaceSize)) })},
	// translate_table
	{name: "num_entries too small", errno: unix.EINVAL, // i != repl->num_entries
		blob: patch(func(b []byte) { put32(b, 36, binary.LittleEndian.Uint32(b[36:])-1) })},
	{name: "num_entries too large", errno: unix.EINVAL,
		blob: patch(func(b []byte) { put32(b, 36, binary.LittleEndian.Uint32(b[36:])+1) })},
	// xt_check_table_hooks
	{name: "hook entry not at an entry", errno: unix.EINVAL, // hook_entry[i] == 0xFFFFFFFF
		blob: patch(func(b []byte) { put32(b, 44+4*HookForward, binary.LittleEndian.Uint32(b[44+4*HookForward:])+8) })},
	{name: "underflow not at an entry", errno: unix.EINVAL, // underflow[i] == 0xFFFFFFFF
		blob: patch(func(b []byte) { put32(b, 64+4*HookLocalIn, 8) })},
	{name: "hook entries unsorted", errno: unix.EINVAL, // max_entry > hook_entry[i]
		blob: patch(func(b []byte) { put32(b, 44+4*HookForward, 0) })},
	{name: "underflows duplicated", errno: unix.EINVAL, // max_uflow == underflow[i]
		blob: patch(func(b []byte) {
			put32(b, 64+4*HookLocalOut, binary.LittleEndian.Uint32(b[64+4*HookForward:]))
		})},
	{name: "valid_hooks beyond the filter table", errno: 0, // translate_table checks the hooks it is given;
		// __do_replace then refuses ("You lied!"), see the table package
		kernelOverride: true, kernelErrno: unix.EINVAL,
		blob: func(t testing.TB) []byte {
			b := baseBuilder(t, func(b *Builder) {
				must(t, b.NewChain("c"))
				must(t, b.Append("c", RuleSpec{Jump: "ACCEPT"}))
			})
			// POSTROUTING enters at c's rule, an unconditional ACCEPT.
			c := uint32(entryAt(b, baseEnd+1) - ReplaceSize)
			put32(b, 32, FilterValidHooks|1<<HookPostRouting)
			put32(b, 44+4*HookPostRouting, c)
			put32(b, 64+4*HookPostRouting, c)
			return b
		}},
	// mark_source_chains
	{name: "jump loop", errno: unix.ELOOP,
		blob: func(t testing.TB) []byte {
			return baseBuilder(t, func(b *Builder) { must(t, b.Append("b", RuleSpec{Jump: "a"})) })
		}},
	{name: "goto loop", errno: unix.ELOOP,
		blob: func(t testing.TB) []byte {
			return baseBuilder(t, func(b *Builder) { must(t, b.Append("b", RuleSpec{Jump: "a", Goto: true})) })
		}},
	{name: "chain jumps to itself", errno: unix.ELOOP,
		blob: func(t testing.TB) []byte {
			return baseBuilder(t, func(b *Builder) { must(t, b.Append("a", RuleSpec{Jump: "a"})) })
		}},
	{name: "jump into the middle of an entry", errno: unix.ELOOP, // !xt_find_jump_offset
		blob: patch(func(b []byte) {
			put32(b, targetAt(b, baseInputJump)+EntryTargetSize, uint32(entryAt(b, baseAICMP)-ReplaceSize+8))
		})},
	{name: "jump beyond the table", errno: unix.ELOOP,
		blob: patch(func(b []byte) { put32(b, targetAt(b, baseInputJump)+EntryTargetSize, 1<<20) })},
	{name: "jump back into the calling rule", errno: unix.ELOOP,
		blob: patch(func(b []byte) {
			put32(b, targetAt(b, baseAICMP)+EntryTargetSize, uint32(entryAt(b, baseInputJump)-ReplaceSize))
		})},
	{name: "jump to offset 0", errno: unix.EINVAL, // verdict_ok: 0 is no jump
		blob: patch(func(b []byte) { put32(b, targetAt(b, baseAICMP)+EntryTargetSize, 0) })},
	{name: "user chain falls off the end", errno: unix.ELOOP, // newpos >= newinfo->size
		blob: func(t testing.TB) []byte {
			// b's RETURN becomes a conditional RETURN: b falls into the final
			// ERROR entry, and from there off the end.
			b := baseBuilder(t, nil)
			b[entryAt(b, baseBReturn)+80] = ProtoTCP
			return b
		}},
	{name: "unreachable bad jump is accepted", errno: 0, // only reachable entries are walked
		blob: func(t testing.TB) []byte {
			return baseBuilder(t, func(b *Builder) {
				must(t, b.NewChain("c"))
				must(t, b.Append("c", RuleSpec{Target: ptr(NewStandardTarget(13))}))
			})
		}},
	// find_check_entry: lookups
	{name: "unknown match", errno: unix.ENOENT, // xt_request_find_match: no module
		blob: withRule(RuleSpec{Matches: []Match{rawMatch("nosuchmatch", 0, make([]byte, 8))}, Jump: "DROP"})},
	{name: "match quota is not bpfilter's", errno: unix.ENOENT, kernelAccepts: true,
		blob: withRule(RuleSpec{Matches: []Match{rawMatch("quota", 0, make([]byte, 24))}, Jump: "DROP"})},
	{name: "unknown target", errno: unix.ENOENT, // xt_request_find_target: no module
		blob: withRule(RuleSpec{Target: rawTarget("NOSUCHTARGET", 0, make([]byte, 8))})},
	{name: "target ACCEPT by name", errno: unix.ENOENT,
		blob: withRule(RuleSpec{Target: rawTarget("ACCEPT", 0, make([]byte, 8))})},
	{name: "target MARK is not bpfilter's", errno: unix.ENOENT, kernelAccepts: true,
		blob: withRule(RuleSpec{Target: rawTarget("MARK", 2, make([]byte, 8))})},
	{name: "match name without NUL", errno: unix.EINVAL, // strnlen(name, XT_EXTENSION_MAXNAMELEN) == XT_EXTENSION_MAXNAMELEN
		blob: withRule(RuleSpec{Matches: []Match{rawMatch(strings.Repeat("m", ExtensionMaxNameLen), 0, make([]byte, 8))}, Jump: "DROP"})},
	{name: "tcp revision 1", errno: unix.ENOENT, // NFPROTO_IPV4 name found, UNSPEC search says ENOENT
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoTCP}, Matches: []Match{rawMatch("tcp", 1, make([]byte, 16))}, Jump: "DROP"})},
	{name: "multiport revision 0", errno: unix.ENOENT, // 6.1 has revision 1 only
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoTCP}, Matches: []Match{rawMatch("multiport", 0, make([]byte, 40))}, Jump: "DROP"})},
	{name: "comment revision 1", errno: unix.EPROTOTYPE, // NFPROTO_UNSPEC: name found, other revision
		blob: withRule(RuleSpec{Matches: []Match{rawMatch("comment", 1, make([]byte, 256))}, Jump: "DROP"})},
	{name: "standard target revision 1", errno: unix.ENOENT,
		blob: withRule(RuleSpec{Target: rawTarget("", 1, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0})})},
	{name: "matches are checked before the target", errno: unix.ENOENT,
		blob: func(t testing.TB) []byte {
			// The target's size is wrong (EINVAL in check_target), but the
			// match lookup comes first.
			tg := rawTarget("", 0, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0})
			put16(tg.Raw, 0, 36)
			return withRule(RuleSpec{Matches: []Match{rawMatch("nosuchmatch", 0, make([]byte, 8))}, Target: tg})(t)
		}},
	// xt_check_match / xt_check_target
	{name: "tcp data too short", errno: unix.EINVAL, // XT_ALIGN(matchsize) != size
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoTCP}, Matches: []Match{rawMatch("tcp", 0, make([]byte, 8))}, Jump: "DROP"})},
	{name: "comment data too long", errno: unix.EINVAL,
		blob: withRule(RuleSpec{Matches: []Match{rawMatch("comment", 0, make([]byte, 264))}, Jump: "DROP"})},
	{name: "short standard target's verdict still counts", errno: unix.ELOOP, // mark_source_chains
		// reads the verdict past target_size, before check_target refuses the size
		blob: patch(func(b []byte) {
			tg := targetAt(b, baseInputJump)
			put16(b, tg, EntryTargetSize)
			put32(b, tg+EntryTargetSize, uint32(entryAt(b, baseInputJump)-ReplaceSize))
		})},
	{name: "standard target data too short", errno: unix.EINVAL, // XT_ALIGN(targetsize) != size
		blob: func(t testing.TB) []byte {
			b := baseBuilder(t, nil)
			put16(b, targetAt(b, 0), 36)
			return b
		}},
	{name: "tcp match without -p tcp", errno: unix.EINVAL, // match->proto != proto
		blob: withRule(RuleSpec{Matches: []Match{tcpMatch()}, Jump: "DROP"})},
	{name: "tcp match with ! -p tcp", errno: unix.EINVAL, // inv_proto
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoTCP, InvFlags: InvProto}, Matches: []Match{tcpMatch()}, Jump: "DROP"})},
	{name: "udp match with -p tcp", errno: unix.EINVAL,
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoTCP}, Matches: []Match{NewMatch(&UDP{})}, Jump: "DROP"})},
	{name: "icmp match with -p udp", errno: unix.EINVAL,
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoUDP}, Matches: []Match{NewMatch(&ICMP{})}, Jump: "DROP"})},
	// checkentry
	{name: "tcp unknown invflags", errno: unix.EINVAL, // tcp_mt_check
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoTCP}, Matches: []Match{NewMatch(&TCP{InvFlags: 0x10})}, Jump: "DROP"})},
	{name: "udp unknown invflags", errno: unix.EINVAL, // udp_mt_check
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoUDP}, Matches: []Match{NewMatch(&UDP{InvFlags: 0x04})}, Jump: "DROP"})},
	{name: "icmp unknown invflags", errno: unix.EINVAL, // icmp_checkentry
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoICMP}, Matches: []Match{NewMatch(&ICMP{InvFlags: 0x02})}, Jump: "DROP"})},
	{name: "multiport 16 ports", errno: unix.EINVAL, // multiport_mt_check: count > XT_MULTI_PORTS
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoTCP}, Matches: []Match{NewMatch(&Multiport{Count: 16})}, Jump: "DROP"})},
	{name: "multiport count 255", errno: unix.EINVAL,
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoUDP}, Matches: []Match{NewMatch(&Multiport{Count: 255, PFlags: [15]uint8{1, 1, 1}})}, Jump: "DROP"})},
	{name: "multiport unknown flags", errno: unix.EINVAL,
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoTCP}, Matches: []Match{NewMatch(&Multiport{Flags: 3, Count: 1})}, Jump: "DROP"})},
	{name: "multiport without a port protocol", errno: unix.EINVAL,
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoICMP}, Matches: []Match{NewMatch(&Multiport{Count: 1})}, Jump: "DROP"})},
	{name: "multiport with ! -p tcp", errno: unix.EINVAL,
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoTCP, InvFlags: InvProto}, Matches: []Match{NewMatch(&Multiport{Count: 1})}, Jump: "DROP"})},
	{name: "multiport range without an end", errno: unix.EINVAL, // multiport_valid_ranges
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoTCP}, Matches: []Match{NewMatch(&Multiport{Count: 2, PFlags: [15]uint8{0, 1}})}, Jump: "DROP"})},
	{name: "multiport range reversed", errno: unix.EINVAL,
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoTCP}, Matches: []Match{NewMatch(&Multiport{Count: 2, Ports: [15]uint16{9, 8}, PFlags: [15]uint8{1}})}, Jump: "DROP"})},
	{name: "multiport ranges chained", errno: unix.EINVAL,
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoTCP}, Matches: []Match{NewMatch(&Multiport{Count: 3, Ports: [15]uint16{1, 2, 3}, PFlags: [15]uint8{1, 1}})}, Jump: "DROP"})},
	{name: "multiport on sctp", errno: 0,
		blob: withRule(RuleSpec{IP: IP{Proto: ProtoSCTP}, Matches: []Match{NewMatch(&Multiport{Count: 15})}, Jump: "DROP"})},
	{name: "iprange with any flags", errno: 0, // iprange has no checkentry
		blob: withRule(RuleSpec{Matches: []Match{NewMatch(&IPRange{Flags: 0xFF})}, Jump: "DROP"})},
	// order of the passes
	{name: "structure before loops", errno: unix.EINVAL,
		blob: func(t testing.TB) []byte {
			b := baseBuilder(t, func(b *Builder) { must(t, b.Append("b", RuleSpec{Jump: "a"})) })
			b[entryAt(b, 0)+82] = 0x04
			return b
		}},
	{name: "loops before extensions", errno: unix.ELOOP,
		blob: func(t testing.TB) []byte {
			return baseBuilder(t, func(b *Builder) {
				must(t, b.Append("INPUT", RuleSpec{Matches: []Match{rawMatch("nosuchmatch", 0, make([]byte, 8))}, Jump: "DROP"}))
				must(t, b.Append("b", RuleSpec{Jump: "a"}))
			})
		}},
}

func ptr[T any](v T) *T { return &v }

// VerdictReturnU and VerdictQueueU are the verdicts as unsigned words.
const (
	VerdictReturnU = uint32(0xFFFFFFFB)
	VerdictQueueU  = uint32(0xFFFFFFFC)
)

func TestTranslateErrno(t *testing.T) {
	for _, c := range errnoCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.blob(t))
			if got := ErrnoOf(err); got != c.errno {
				t.Fatalf("errno %v (%v), want %v", got, err, c.errno)
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Reason == "" || !errors.Is(err, c.errno) {
					t.Fatalf("error %#v has no reason or errno", err)
				}
			}
		})
	}
}

// TestTranslateErrnoKernel sends the same blobs to the running kernel's
// ip_tables, in a private network namespace, and expects the same errnos
// (except where bpfilter refuses an extension the kernel has).
func TestTranslateErrnoKernel(t *testing.T) {
	k := kerneltest.Open(t)
	for _, c := range errnoCases {
		t.Run(c.name, func(t *testing.T) {
			want := c.errno
			if c.kernelAccepts {
				want = 0
			}
			if c.kernelOverride {
				want = c.kernelErrno
			}
			kk := k
			if want == 0 {
				kk = kerneltest.Open(t) // a success changes the table
			}
			if _, got := kk.Replace(c.blob(t)); got != want {
				t.Fatalf("kernel: errno %v, want %v", got, want)
			}
		})
	}
}

func TestReasons(t *testing.T) {
	b := withRule(RuleSpec{Matches: []Match{rawMatch("quota", 0, make([]byte, 24))}, Jump: "DROP"})(t)
	_, err := Decode(b)
	if err == nil || !strings.Contains(err.Error(), `match "quota" is not supported by bpfilter`) {
		t.Fatalf("reason: %v", err)
	}
	b = withRule(RuleSpec{Target: rawTarget("MARK", 2, make([]byte, 8))})(t)
	if _, err := Decode(b); err == nil || !strings.Contains(err.Error(), `target "MARK" is not supported by bpfilter`) {
		t.Fatalf("reason: %v", err)
	}
}

func TestCheckReplaceHeaderLimits(t *testing.T) {
	h := ReplaceHeader{NumCounters: 4, Size: MaxTableSize - tableInfoSize}
	if err := CheckReplaceHeader(&h, 1<<40); ErrnoOf(err) != unix.ENOMEM {
		t.Errorf("size at the limit: %v", err) // xt_alloc_table_info: sz >= XT_MAX_TABLE_SIZE
	}
	h.Size--
	if err := CheckReplaceHeader(&h, 1<<40); err != nil {
		t.Errorf("size below the limit: %v", err)
	}
	if err := CheckNumCounters(MaxTableSize/CountersSize + 1); ErrnoOf(err) != unix.ENOMEM {
		t.Errorf("num_counters beyond xt_counters_alloc: %v", err)
	}
	if err := CheckNumCounters(MaxTableSize / CountersSize); err != nil {
		t.Errorf("num_counters at xt_counters_alloc's limit: %v", err)
	}
	// Translate never trusts len(entries) against a larger size.
	if _, err := Translate(&ReplaceHeader{Size: 100, NumEntries: 1}, make([]byte, 10)); ErrnoOf(err) != unix.EINVAL {
		t.Errorf("short entries: %v", err)
	}
}
