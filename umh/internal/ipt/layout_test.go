package ipt

import (
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/cvalues"
)

// cValues evaluates C expressions against the host's uapi headers.
func cValues(t *testing.T, exprs [][2]string) map[string]int64 {
	t.Helper()
	var es []cvalues.Expr
	for _, e := range exprs {
		es = append(es, cvalues.Expr{Name: e[0], C: e[1]})
	}
	return cvalues.Eval(t, []string{
		"<linux/netfilter_ipv4/ip_tables.h>",
		"<linux/netfilter/xt_tcpudp.h>",
		"<linux/netfilter/xt_multiport.h>",
		"<linux/netfilter/xt_iprange.h>",
		"<linux/netfilter/xt_comment.h>",
	}, es)
}

func TestLayoutPinnedToC(t *testing.T) {
	type pin struct {
		name, c string
		goVal   int64
	}
	pins := []pin{
		{"IPT_SO_SET_REPLACE", "IPT_SO_SET_REPLACE", SoSetReplace},
		{"IPT_SO_SET_ADD_COUNTERS", "IPT_SO_SET_ADD_COUNTERS", SoSetAddCounters},
		{"IPT_SO_GET_INFO", "IPT_SO_GET_INFO", SoGetInfo},
		{"IPT_SO_GET_ENTRIES", "IPT_SO_GET_ENTRIES", SoGetEntries},
		{"IPT_SO_GET_REVISION_MATCH", "IPT_SO_GET_REVISION_MATCH", SoGetRevisionMatch},
		{"IPT_SO_GET_REVISION_TARGET", "IPT_SO_GET_REVISION_TARGET", SoGetRevisionTarget},
		{"XT_TABLE_MAXNAMELEN", "XT_TABLE_MAXNAMELEN", TableMaxNameLen},
		{"XT_FUNCTION_MAXNAMELEN", "XT_FUNCTION_MAXNAMELEN", FunctionMaxNameLen},
		{"XT_EXTENSION_MAXNAMELEN", "XT_EXTENSION_MAXNAMELEN", ExtensionMaxNameLen},
		{"IFNAMSIZ", "IFNAMSIZ", IfNameSize},
		{"NF_INET_NUMHOOKS", "NF_INET_NUMHOOKS", NumHooks},
		{"NF_INET_LOCAL_IN", "NF_INET_LOCAL_IN", HookLocalIn},
		{"NF_INET_FORWARD", "NF_INET_FORWARD", HookForward},
		{"NF_INET_LOCAL_OUT", "NF_INET_LOCAL_OUT", HookLocalOut},
		{"XT_ALIGN(1)", "XT_ALIGN(1)", int64(XTAlign(1))},
		{"XT_RETURN", "XT_RETURN", VerdictReturn},
		{"NF_ACCEPT", "-NF_ACCEPT-1", VerdictAccept},
		{"NF_DROP", "-NF_DROP-1", VerdictDrop},
		{"NF_QUEUE", "-NF_QUEUE-1", VerdictQueue},
		{"IPT_F_MASK", "IPT_F_MASK", FlagMask},
		{"IPT_F_GOTO", "IPT_F_GOTO", FlagGoto},
		{"IPT_INV_MASK", "IPT_INV_MASK", InvMask},
		{"XT_INV_PROTO", "XT_INV_PROTO", InvProto},
		{"XT_TCP_INV_MASK", "XT_TCP_INV_MASK", TCPInvMask},
		{"XT_UDP_INV_MASK", "XT_UDP_INV_MASK", UDPInvMask},
		{"IPT_ICMP_INV", "IPT_ICMP_INV", ICMPInv},
		{"XT_MULTI_PORTS", "XT_MULTI_PORTS", MultiPorts},
		{"IPRANGE_DST_INV", "IPRANGE_DST_INV", IPRangeDstInv},

		{"sizeof.ipt_ip", "sizeof(struct ipt_ip)", IPSize},
		{"ipt_ip.proto", "offsetof(struct ipt_ip, proto)", 80},
		{"ipt_ip.flags", "offsetof(struct ipt_ip, flags)", 82},
		{"ipt_ip.invflags", "offsetof(struct ipt_ip, invflags)", 83},
		{"ipt_ip.iniface_mask", "offsetof(struct ipt_ip, iniface_mask)", 48},
		{"sizeof.ipt_entry", "sizeof(struct ipt_entry)", EntrySize},
		{"ipt_entry.nfcache", "offsetof(struct ipt_entry, nfcache)", entryNFCacheOff},
		{"ipt_entry.target_offset", "offsetof(struct ipt_entry, target_offset)", entryTargetOffOff},
		{"ipt_entry.next_offset", "offsetof(struct ipt_entry, next_offset)", entryNextOffOff},
		{"ipt_entry.comefrom", "offsetof(struct ipt_entry, comefrom)", entryComefromOff},
		{"ipt_entry.counters", "offsetof(struct ipt_entry, counters)", entryCountersOff},
		{"ipt_entry.elems", "offsetof(struct ipt_entry, elems)", EntrySize},
		{"sizeof.xt_counters", "sizeof(struct xt_counters)", CountersSize},
		{"sizeof.ipt_getinfo", "sizeof(struct ipt_getinfo)", GetInfoSize},
		{"ipt_getinfo.valid_hooks", "offsetof(struct ipt_getinfo, valid_hooks)", 32},
		{"ipt_getinfo.hook_entry", "offsetof(struct ipt_getinfo, hook_entry)", 36},
		{"ipt_getinfo.underflow", "offsetof(struct ipt_getinfo, underflow)", 56},
		{"ipt_getinfo.num_entries", "offsetof(struct ipt_getinfo, num_entries)", 76},
		{"ipt_getinfo.size", "offsetof(struct ipt_getinfo, size)", 80},
		{"sizeof.ipt_replace", "sizeof(struct ipt_replace)", ReplaceSize},
		{"ipt_replace.valid_hooks", "offsetof(struct ipt_replace, valid_hooks)", 32},
		{"ipt_replace.num_entries", "offsetof(struct ipt_replace, num_entries)", 36},
		{"ipt_replace.size", "offsetof(struct ipt_replace, size)", 40},
		{"ipt_replace.hook_entry", "offsetof(struct ipt_replace, hook_entry)", 44},
		{"ipt_replace.underflow", "offsetof(struct ipt_replace, underflow)", 64},
		{"ipt_replace.num_counters", "offsetof(struct ipt_replace, num_counters)", 84},
		{"ipt_replace.counters", "offsetof(struct ipt_replace, counters)", replaceCountersPtrOf},
		{"ipt_replace.entries", "offsetof(struct ipt_replace, entries)", ReplaceSize},
		{"sizeof.ipt_get_entries", "sizeof(struct ipt_get_entries)", GetEntriesSize},
		{"ipt_get_entries.size", "offsetof(struct ipt_get_entries, size)", 32},
		{"ipt_get_entries.entrytable", "offsetof(struct ipt_get_entries, entrytable)", GetEntriesSize},
		{"sizeof.xt_counters_info", "sizeof(struct xt_counters_info)", CountersInfoSize},
		{"xt_counters_info.num_counters", "offsetof(struct xt_counters_info, num_counters)", 32},
		{"xt_counters_info.counters", "offsetof(struct xt_counters_info, counters)", CountersInfoSize},
		{"sizeof.xt_entry_match", "sizeof(struct xt_entry_match)", EntryMatchSize},
		{"xt_entry_match.name", "offsetof(struct xt_entry_match, u.user.name)", extNameOff},
		{"xt_entry_match.revision", "offsetof(struct xt_entry_match, u.user.revision)", extRevisionOff},
		{"xt_entry_match.data", "offsetof(struct xt_entry_match, data)", EntryMatchSize},
		{"sizeof.xt_entry_target", "sizeof(struct xt_entry_target)", EntryTargetSize},
		{"xt_entry_target.revision", "offsetof(struct xt_entry_target, u.user.revision)", extRevisionOff},
		{"sizeof.xt_standard_target", "sizeof(struct xt_standard_target)", StandardTargetSize},
		{"xt_standard_target.verdict", "offsetof(struct xt_standard_target, verdict)", EntryTargetSize},
		{"sizeof.xt_error_target", "sizeof(struct xt_error_target)", ErrorTargetSize},
		{"xt_error_target.errorname", "offsetof(struct xt_error_target, errorname)", EntryTargetSize},
		{"sizeof.xt_get_revision", "sizeof(struct xt_get_revision)", GetRevisionSize},
		{"xt_get_revision.revision", "offsetof(struct xt_get_revision, revision)", ExtensionMaxNameLen},
		{"sizeof.xt_tcp", "sizeof(struct xt_tcp)", tcpSize},
		{"xt_tcp.invflags", "offsetof(struct xt_tcp, invflags)", 11},
		{"sizeof.xt_udp", "sizeof(struct xt_udp)", udpSize},
		{"xt_udp.invflags", "offsetof(struct xt_udp, invflags)", 8},
		{"sizeof.ipt_icmp", "sizeof(struct ipt_icmp)", icmpSize},
		{"sizeof.xt_multiport_v1", "sizeof(struct xt_multiport_v1)", multiportSize},
		{"xt_multiport_v1.pflags", "offsetof(struct xt_multiport_v1, pflags)", 32},
		{"xt_multiport_v1.invert", "offsetof(struct xt_multiport_v1, invert)", 47},
		{"sizeof.xt_iprange_mtinfo", "sizeof(struct xt_iprange_mtinfo)", iprangeSize},
		{"xt_iprange_mtinfo.dst_min", "offsetof(struct xt_iprange_mtinfo, dst_min)", 32},
		{"xt_iprange_mtinfo.flags", "offsetof(struct xt_iprange_mtinfo, flags)", 64},
		{"sizeof.xt_comment_info", "sizeof(struct xt_comment_info)", commentSize},
	}
	exprs := make([][2]string, len(pins))
	for i, p := range pins {
		exprs[i] = [2]string{p.name, p.c}
	}
	c := cValues(t, exprs)
	for _, p := range pins {
		if got, ok := c[p.name]; !ok || got != p.goVal {
			t.Errorf("%s: C says %d, Go says %d", p.c, got, p.goVal)
		}
	}
	if StandardEntrySize != 152 || ErrorEntrySize != 176 {
		t.Errorf("ipt_standard %d, ipt_error %d", StandardEntrySize, ErrorEntrySize)
	}
}
