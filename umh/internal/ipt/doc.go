// Package ipt is the codec of the iptables sockopt protocol (the structures
// of include/uapi/linux/netfilter_ipv4/ip_tables.h and
// include/uapi/linux/netfilter/x_tables.h) and the validator of
// IPT_SO_SET_REPLACE blobs.
//
// Validation follows net/ipv4/netfilter/ip_tables.c of Linux 6.1 check by
// check, in the same order, so that every refused blob gets the errno
// ip_tables would give: Translate is translate_table (with
// check_entry_size_and_hooks, xt_check_entry_offsets, xt_check_table_hooks,
// mark_source_chains and find_check_entry), CheckReplaceHeader is the part
// of do_replace that precedes it. Only the extensions listed in ext.go are
// accepted; any other one is refused with ENOENT, which is what ip_tables
// answers when the extension's module cannot be loaded.
//
// One exception to the order: kernel-hosted extensions (kernelext.go:
// REJECT, LOG, limit, recent, ...) are run by the kernel's own x_tables
// modules, and their checkentry runs in the kernel, when bpfilter.ko gets
// the table's programs, after the umh has checked the whole blob. Where
// ip_tables would stop at such a checkentry's error, a later entry's error
// that the umh finds comes first.
//
// Only the native x86_64 layout (little endian, 64-bit pointers) exists
// here: there is no compat (32-bit) support. Sizes and offsets are pinned
// against the C headers by layout_test.go.
//
// The codec never trusts a length or a count from the caller: every offset
// is checked against the buffer before use, and no allocation is sized by a
// count that was not first bounded by the bytes actually present.
package ipt
