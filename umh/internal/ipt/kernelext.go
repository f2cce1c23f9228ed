package ipt

// Kernel-hosted extensions.
//
// Some extensions do work that only the kernel can do (REJECT sends
// packets, LOG writes the kernel log, recent, limit and nfacct keep state
// that x_tables shares by name, owner reads the socket, addrtype the
// routing tables). bpfilter does not reimplement them: the kernel's own
// x_tables modules run them. The umh hands each one, as a KernelExt, to
// bpfilter.ko (struct bpfilter_ext in kmod/msgfmt.h), which looks it up and
// checks it as ip_tables' find_check_entry would (xt_check_match or
// xt_check_target, with the extension's real checkentry) and calls its
// ->match() or ->target() when the BPF program calls out.
//
// What the umh checks of them is what ip_tables checks before
// checkentry: a NUL in the name, the name and revision (ENOENT,
// EPROTOTYPE), then xt_check_match/xt_check_target's own checks: the exact
// aligned size, the table, the hooks and the protocol (EINVAL).
// Their checkentry runs only in the kernel, when the module gets the
// table's programs, after the umh has validated the whole blob. So the
// errno order differs from ip_tables' in one way: ip_tables stops at the
// first entry whose check fails, checkentry included, while bpfilter
// reports a kernel-hosted extension's checkentry error (an unknown LOG
// level, REJECT --reject-with tcp-reset without -p tcp, an nfacct object
// that does not exist, ...) only when no entry anywhere in the blob fails
// one of the umh's checks. A blob that fails only in such a checkentry gets
// that checkentry's errno from the module, as from ip_tables; a blob that
// also fails one of the umh's checks in a later entry gets the umh's errno
// where ip_tables would have given the earlier checkentry's.

// KernelExt is a match or target that the kernel's own x_tables module runs (a callout).
type KernelExt struct {
	Name     string
	Revision uint8
	Target   bool
	Data     []byte // the XT_ALIGN(size) data bytes as the caller gave them
	UserSize int    // bytes GET_ENTRIES returns (xt usersize, else size); the rest reads as zero
}

// The data sizes (matchsize/targetsize) of the kernel-hosted extensions,
// and the usersize of those that have one: what GET_ENTRIES returns of
// their data (the rest is kernel pointers and state). Pinned to the C
// headers by kernelext_test.go.
const (
	logInfoSize      = 32  // struct xt_log_info (xt_LOG.h)
	rejectInfoSize   = 4   // struct ipt_reject_info (ipt_REJECT.h)
	rateInfoSize     = 40  // struct xt_rateinfo (xt_limit.h)
	rateInfoUser     = 8   // offsetof(struct xt_rateinfo, prev)
	addrtypeSizeV0   = 12  // struct xt_addrtype_info
	addrtypeSizeV1   = 8   // struct xt_addrtype_info_v1
	recentSizeV0     = 212 // struct xt_recent_mtinfo
	recentSizeV1     = 228 // struct xt_recent_mtinfo_v1
	markMtSize       = 12  // struct xt_mark_mtinfo1
	nfacctSizeV0     = 40  // struct xt_nfacct_match_info
	nfacctUserV0     = 32  // offsetof(struct xt_nfacct_match_info, nfacct)
	nfacctSizeV1     = 40  // struct xt_nfacct_match_info_v1
	nfacctUserV1     = 32  // offsetof(struct xt_nfacct_match_info_v1, nfacct)
	macInfoSize      = 12  // struct xt_mac_info
	pkttypeInfoSize  = 8   // struct xt_pkttype_info
	lengthInfoSize   = 6   // struct xt_length_info
	ttlInfoSize      = 2   // struct ipt_ttl_info (ipt_ttl.h)
	dscpInfoSize     = 2   // struct xt_dscp_info (xt_dscp.h)
	tosMatchInfoSize = 3   // struct xt_tos_match_info (xt_dscp.h)
	ecnInfoSize      = 4   // struct xt_ecn_info
	ownerInfoSize    = 20  // struct xt_owner_match_info
)

// Names of the kernel-hosted targets.
const (
	LogTarget    = "LOG"
	RejectTarget = "REJECT"
)

// Hook masks of the kernel-hosted extensions restricted to some hooks
// (.hooks), by NF_INET_* bit.
const (
	macHooks    = 1<<HookPreRouting | 1<<HookLocalIn | 1<<HookForward // xt_mac.c
	ownerHooks  = 1<<HookLocalOut | 1<<HookPostRouting                // xt_owner.c
	rejectHooks = 1<<HookLocalIn | 1<<HookForward | 1<<HookLocalOut   // ipt_REJECT.c
)

// kernelExt is the registration of a kernel-hosted extension: found and
// size-checked by the umh like the others, decoded to a *KernelExt.
// userSize 0 means the extension has no usersize (all size bytes are
// returned).
func kernelExt(target bool, name string, revision uint8, fam family, size, userSize int) extension {
	x := extension{name: name, revision: revision, family: fam, size: size, userSize: userSize, kernel: true}
	us := size
	if userSize != 0 {
		us = userSize
	}
	x.decode = func(data []byte) any {
		return &KernelExt{
			Name: name, Revision: revision, Target: target,
			Data: append([]byte(nil), data...), UserSize: us,
		}
	}
	return x
}

func kernelMatch(name string, revision uint8, fam family, size, userSize int) extension {
	return kernelExt(false, name, revision, fam, size, userSize)
}

func kernelTarget(name string, revision uint8, fam family, size, userSize int) extension {
	return kernelExt(true, name, revision, fam, size, userSize)
}

// withHooks restricts x to the hooks in mask (.hooks).
func withHooks(x extension, mask uint32) extension {
	x.hooks = mask
	return x
}

// inTable restricts x to the table named table (.table).
func inTable(x extension, table string) extension {
	x.table = table
	return x
}
