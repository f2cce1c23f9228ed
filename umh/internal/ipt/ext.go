package ipt

import "golang.org/x/sys/unix"

// family is the list an extension is registered in: ip_tables looks in the
// NFPROTO_IPV4 list first, then in the NFPROTO_UNSPEC one.
type family uint8

const (
	familyIPv4 family = iota
	familyUnspec
)

// extension is one registered xt_match or xt_target, as far as validation
// and GET_ENTRIES need it.
type extension struct {
	name     string
	revision uint8
	family   family
	// size is matchsize/targetsize, before XT_ALIGN; the kernel copies this
	// many bytes of data back to the user and zeroes the rest.
	size int
	// proto, if not 0, is the only ip.proto the match is valid for.
	proto uint16
	// check is the extension's checkentry; nil if it has none.
	check func(ip *IP, data []byte) *Error
	// decode turns validated data into its typed form.
	decode func(data []byte) any
	// userSize, if not 0, is the extension's usersize: the bytes of data
	// that GET_ENTRIES returns (xt_data_to_user); the rest reads as zero.
	userSize int
	// hooks, if not 0, are the only hooks (1 << NF_INET_*) the extension
	// may be reached from; table, if not "", the only table it is valid in.
	hooks uint32
	table string
	// kernel marks a kernel-hosted extension (kernelext.go): its
	// checkentry and its work are the kernel module's.
	kernel bool
}

// matches are the matches bpfilter accepts, registered as in Linux 6.1
// (xt_tcpudp.c, ip_tables.c for icmp, xt_multiport.c, xt_iprange.c,
// xt_comment.c). 6.1 has no multiport revision 0 any more: a blob using it
// is refused as 6.1's ip_tables refuses it.
var matches = []extension{
	{name: "tcp", family: familyIPv4, size: tcpSize, proto: ProtoTCP, check: checkTCP, decode: decodeTCPAny},
	{name: "udp", family: familyIPv4, size: udpSize, proto: ProtoUDP, check: checkUDP, decode: decodeUDPAny},
	{name: "icmp", family: familyIPv4, size: icmpSize, proto: ProtoICMP, check: checkICMP, decode: decodeICMPAny},
	{name: "multiport", revision: 1, family: familyIPv4, size: multiportSize, check: checkMultiport, decode: decodeMultiportAny},
	{name: "iprange", revision: 1, family: familyIPv4, size: iprangeSize, decode: decodeIPRangeAny},
	{name: "comment", family: familyUnspec, size: commentSize, decode: decodeCommentAny},
	// xt_conntrack.c and xt_state.c: their checkentry only takes conntrack
	// (nf_ct_netns_get); the datapath evaluates them from the ctx's ct_*.
	{name: "conntrack", revision: 1, family: familyUnspec, size: conntrackSizeV1, decode: decodeConntrackAny},
	{name: "conntrack", revision: 2, family: familyUnspec, size: conntrackSizeV2, decode: decodeConntrackAny},
	{name: "conntrack", revision: 3, family: familyUnspec, size: conntrackSizeV3, decode: decodeConntrackAny},
	{name: "state", family: familyUnspec, size: stateInfoSize, decode: decodeStateAny},
	// Kernel-hosted (kernelext.go), as their 6.1 modules register them for
	// NFPROTO_IPV4 or NFPROTO_UNSPEC; none has a .proto.
	kernelMatch("limit", 0, familyUnspec, rateInfoSize, rateInfoUser), // xt_limit.c
	kernelMatch("addrtype", 0, familyIPv4, addrtypeSizeV0, 0),         // xt_addrtype.c
	kernelMatch("addrtype", 1, familyIPv4, addrtypeSizeV1, 0),
	kernelMatch("recent", 0, familyIPv4, recentSizeV0, 0), // xt_recent.c
	kernelMatch("recent", 1, familyIPv4, recentSizeV1, 0),
	kernelMatch("mark", 1, familyUnspec, markMtSize, 0),                // xt_mark.c
	kernelMatch("nfacct", 0, familyUnspec, nfacctSizeV0, nfacctUserV0), // xt_nfacct.c
	kernelMatch("nfacct", 1, familyUnspec, nfacctSizeV1, nfacctUserV1),
	withHooks(kernelMatch("mac", 0, familyIPv4, macInfoSize, 0), macHooks), // xt_mac.c
	kernelMatch("pkttype", 0, familyUnspec, pkttypeInfoSize, 0),            // xt_pkttype.c
	kernelMatch("length", 0, familyIPv4, lengthInfoSize, 0),                // xt_length.c
	kernelMatch("ttl", 0, familyIPv4, ttlInfoSize, 0),                      // xt_hl.c
	kernelMatch("dscp", 0, familyIPv4, dscpInfoSize, 0),                    // xt_dscp.c
	kernelMatch("tos", 1, familyIPv4, tosMatchInfoSize, 0),
	kernelMatch("ecn", 0, familyIPv4, ecnInfoSize, 0),                            // xt_ecn.c
	withHooks(kernelMatch("owner", 1, familyIPv4, ownerInfoSize, 0), ownerHooks), // xt_owner.c
}

// targets are the targets bpfilter accepts: ip_tables' builtin ones, and
// NFQUEUE as xt_NFQUEUE.c registers it.
var targets = []extension{
	{name: StandardTarget, family: familyIPv4, size: 4},
	{name: ErrorTarget, family: familyIPv4, size: FunctionMaxNameLen},
	{name: NFQueueTarget, family: familyUnspec, size: nfqSizeV0, decode: decodeNFQueue(0)},
	{name: NFQueueTarget, revision: 1, family: familyUnspec, size: nfqSizeV1, check: checkNFQueue(1), decode: decodeNFQueue(1)},
	{name: NFQueueTarget, revision: 2, family: familyUnspec, size: nfqSizeV2, check: checkNFQueue(2), decode: decodeNFQueue(2)},
	{name: NFQueueTarget, revision: 3, family: familyUnspec, size: nfqSizeV3, check: checkNFQueue(3), decode: decodeNFQueue(3)},
	// Kernel-hosted (kernelext.go). MARK (xt_mark.c) is not: it changes the
	// packet for what runs after the filter table.
	kernelTarget(LogTarget, 0, familyIPv4, logInfoSize, 0),                                                  // xt_LOG.c
	inTable(withHooks(kernelTarget(RejectTarget, 0, familyIPv4, rejectInfoSize, 0), rejectHooks), "filter"), // ipt_REJECT.c
}

func kindName(target bool) string {
	if target {
		return "target"
	}
	return "match"
}

// findExtension is xt_find_match/xt_find_target (after the name length
// check of xt_request_find_*): an exact name and revision in the IPv4
// list, else in the UNSPEC list. ip_tables' search of the UNSPEC list
// decides the errno: EPROTOTYPE if that list has the name at another
// revision, ENOENT otherwise, even when the IPv4 list had the name. The
// ENOENT for a name that bpfilter does not know at all is what ip_tables
// gives for an extension whose module cannot be loaded.
func findExtension(target bool, name string, revision uint8) (*extension, *Error) {
	list := matches
	if target {
		list = targets
	}
	known := false
	for _, fam := range []family{familyIPv4, familyUnspec} {
		sameName := false
		for i := range list {
			x := &list[i]
			if x.family != fam || x.name != name {
				continue
			}
			known = true
			if x.revision == revision {
				return x, nil
			}
			sameName = true
		}
		if fam == familyUnspec && sameName {
			return nil, errorf(eprototype, "%s %q revision %d is not supported", kindName(target), name, revision)
		}
	}
	if known {
		return nil, errorf(enoent, "%s %q revision %d is not supported", kindName(target), name, revision)
	}
	return nil, errorf(enoent, "%s %q is not supported by bpfilter", kindName(target), name)
}

// FindRevision answers IPT_SO_GET_REVISION_MATCH/TARGET as xt_find_revision
// does over the extensions bpfilter accepts: the highest revision of name
// when revision is one of them, EPROTONOSUPPORT when name exists only at
// other revisions, ENOENT when bpfilter does not know name at all.
func FindRevision(name string, revision uint8, target bool) (int, unix.Errno) {
	list := matches
	if target {
		list = targets
	}
	best, have := -1, false
	for _, fam := range []family{familyIPv4, familyUnspec} {
		for i := range list {
			x := &list[i]
			if x.family != fam || x.name != name {
				continue
			}
			if int(x.revision) > best {
				best = int(x.revision)
			}
			if x.revision == revision {
				have = true
			}
		}
		if have {
			break
		}
	}
	switch {
	case best == -1:
		return 0, unix.ENOENT
	case !have:
		return 0, unix.EPROTONOSUPPORT
	}
	return best, 0
}

// checkExtension is xt_check_match/xt_check_target for bpfilter's
// extensions: size, table, hooks (hookMask is the entry's comefrom, as
// mark_source_chains left it), protocol, then checkentry; a kernel-hosted
// extension's checkentry is the kernel's (kernelext.go).
func checkExtension(x *extension, target bool, data []byte, ip *IP, table string, hookMask uint32) *Error {
	if XTAlign(x.size) != len(data) {
		return errorf(einval, "%s %q revision %d: invalid size %d (kernel) != (user) %d",
			kindName(target), x.name, x.revision, XTAlign(x.size), len(data))
	}
	if x.table != "" && x.table != table {
		return errorf(einval, "%s %q: only valid in %s table, not %s", kindName(target), x.name, x.table, table)
	}
	if x.hooks != 0 && hookMask&^x.hooks != 0 {
		return errorf(einval, "%s %q: used from hooks %s, but only valid from %s",
			kindName(target), x.name, hookList(hookMask), hookList(x.hooks))
	}
	if x.proto != 0 && (x.proto != ip.Proto || ip.InvFlags&InvProto != 0) {
		return errorf(einval, "%s %q: only valid for protocol %d", kindName(target), x.name, x.proto)
	}
	if x.check != nil {
		return x.check(ip, data)
	}
	return nil
}

// hookList names the hooks of mask, as textify_hooks does.
func hookList(mask uint32) string {
	s := ""
	for h := 0; h < NumHooks; h++ {
		if mask&(1<<h) != 0 {
			if s != "" {
				s += "/"
			}
			s += HookNames[h]
		}
	}
	return s
}
