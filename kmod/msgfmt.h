/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The wire between bpfilter.ko and its usermode helper.
 *
 * 1. The pipes of the usermode driver: one request and one reply per
 *    sockopt call. The request carries the caller's bytes and the reply the
 *    bytes of the answer: the module copies them from and to the caller, in
 *    the caller's context. The umh never touches another process's memory.
 *
 * 2. A private netfilter sockopt range (BPFILTER_SO_*), which only the umh
 *    may use, on any AF_INET socket of its own: it hands the module the
 *    programs of a namespace (by file descriptor, resolved in the umh's own
 *    context), and asks what the module holds after a restart.
 *
 * umh/internal/wire mirrors these structures; its tests compile this
 * header and compare sizes and offsets, so neither side can drift.
 */
#ifndef _BPFILTER_MSGFMT_H
#define _BPFILTER_MSGFMT_H

#include <linux/types.h>
#include <linux/netfilter_ipv4/ip_tables.h>

/*
 * Control commands the module sends on its own; a forwarded sockopt call
 * carries its optname (64 and up) as cmd.
 */
#define BPFILTER_CMD_HEALTH	0	/* get: answer 0 if healthy */
#define BPFILTER_CMD_NETNS_EXIT	1	/* set: payload: __u64 cookies of
					 * namespaces that are gone
					 */

struct mbox_request {
	__u64 netns;	/* net_cookie of the socket's network namespace */
	__u32 len;	/* bytes of payload after this header: the first len
			 * bytes of the caller's optval, those that ip_tables
			 * would read for this call (its header, and for a
			 * set what the header says follows, unless optlen
			 * or the header alone make ip_tables refuse it)
			 */
	__u32 is_set;	/* 1 for setsockopt, 0 for getsockopt */
	__u32 cmd;	/* optname, or BPFILTER_CMD_* */
	__u32 pid;	/* caller's pid in the initial pid namespace (logs) */
	__u32 flags;	/* BPFILTER_REQ_* */
	__u32 optlen;	/* the caller's optlen */
};

/* Request flags. */
#define BPFILTER_REQ_TRACE	0x1	/* log it (bpfilter.trace=1) */

/*
 * The payload that follows a reply, len bytes:
 * - for a get answered 0: what to write into optval, as segments: each a
 *   struct mbox_segment and its len bytes, at off, within optlen (ip_tables
 *   leaves some bytes of a GET_ENTRIES buffer as the caller had them);
 * - for IPT_SO_SET_REPLACE answered 0: the old counters, which the module
 *   copies to the caller's ipt_replace.counters (as ip_tables does), len at
 *   most num_counters * sizeof(struct xt_counters);
 * - otherwise nothing (len 0).
 */
struct mbox_reply {
	__s32 status;	/* 0, or a negative errno */
	__u32 len;	/* bytes of payload after this header */
};

struct mbox_segment {
	__u32 off;	/* in optval */
	__u32 len;	/* bytes that follow */
};

/*
 * The umh's own sockopts, at level IPPROTO_IP; the module refuses them
 * with -EPERM to anyone but the running umh.
 */
#define BPFILTER_SO_BASE	0x6270
#define BPFILTER_SO_SET_PROGS	(BPFILTER_SO_BASE)	/* set: bpfilter_progs */
#define BPFILTER_SO_SET_MAX	(BPFILTER_SO_BASE + 1)
#define BPFILTER_SO_GET_HELD	(BPFILTER_SO_BASE)	/* get: bpfilter_held[] */
#define BPFILTER_SO_GET_MAX	(BPFILTER_SO_BASE + 1)

/* The filter table's hooks, in the order of the arrays below. */
#define BPFILTER_HOOK_INPUT	0	/* NF_INET_LOCAL_IN */
#define BPFILTER_HOOK_FORWARD	1	/* NF_INET_FORWARD */
#define BPFILTER_HOOK_OUTPUT	2	/* NF_INET_LOCAL_OUT */
#define BPFILTER_NUM_HOOKS	3

/*
 * BPFILTER_SO_SET_PROGS: make these the programs of namespace netns, in
 * one step (RCU): a packet meets either the old programs or the new ones.
 * When the call returns, no packet is in the old programs any more, so
 * what they counted is final. All fds -1: the namespace has no programs
 * (every packet accepted) and its hooks go. Otherwise every prog_fd is a
 * BPF_PROG_TYPE_SCHED_CLS program and ctx_fd the BPF_MAP_TYPE_PERCPU_ARRAY
 * (one struct bpfilter_ctx, key 0) that they read; see progctx.h.
 *
 * num_ext struct bpfilter_ext records follow, each ext_size bytes: the
 * kernel extensions the programs call out to (progctx.h), by index. The
 * module finds and checks each as ip_tables' find_check_entry would
 * (xt_request_find_match/_target, xt_check_match/_target, in the filter
 * table) before anything changes, and destroys those of the set it
 * replaces after the swap: per-rule state that x_tables keeps by name
 * (recent lists, nfacct objects) carries over as under ip_tables, and the
 * rest (limit credits) starts afresh with each set. The first failing
 * check's errno is the call's, and nothing changes.
 *
 * BPFILTER_PROGS_CONNTRACK: the programs read conntrack (progctx.h's ct_*
 * fields): the module holds nf_ct_netns_get(net, NFPROTO_IPV4) for as long
 * as they run, as xt_conntrack's checkentry does.
 * BPFILTER_PROGS_IFNAMES: the programs compare interface names (in, out).
 * Without either and without extensions the programs read no ctx, and the
 * module does not fill it.
 *
 * Errors: -ESRCH, no such namespace (gone); -EINVAL, a wrong fd, type,
 * size or record; -ENOMEM; a check's errno.
 */
#define BPFILTER_PROGS_CONNTRACK	0x1
#define BPFILTER_PROGS_IFNAMES		0x2
#define BPFILTER_PROGS_MAX_SIZE		(64 << 20)	/* bytes, records included */

struct bpfilter_progs {
	__u64 netns;	/* net_cookie */
	__u64 gen;	/* the umh's tag for this set, reported by GET_HELD */
	__s32 prog_fd[BPFILTER_NUM_HOOKS];
	__s32 ctx_fd;
	__u32 flags;	/* BPFILTER_PROGS_* */
	__u32 num_ext;	/* struct bpfilter_ext records that follow */
};

#define BPFILTER_EXT_TARGET	0x1	/* an xt_target, else an xt_match */

/*
 * One kernel extension of a rule: what find_check_match/find_check_target
 * are given. ext_size is 8-aligned, sizeof(struct bpfilter_ext) plus
 * data_size rounded up to 8.
 */
struct bpfilter_ext {
	__u32 ext_size;		/* this record's bytes, data included */
	__u32 data_size;	/* XT_ALIGN(matchsize/targetsize) */
	__u32 hook_mask;	/* ipt_entry.comefrom: 1 << NF_INET_* */
	__u8 flags;		/* BPFILTER_EXT_* */
	__u8 revision;
	__u8 pad[2];		/* 0 */
	char name[32];		/* NUL-terminated, XT_EXTENSION_MAXNAMELEN */
	struct ipt_ip ip;	/* the rule's: par->entryinfo's ip */
	__u8 pad2[4];		/* 0 */
	/* data_size bytes of match or target data follow */
};

/*
 * BPFILTER_SO_GET_HELD: one entry per namespace whose programs the module
 * holds; optlen is set to the bytes written. -ENOSPC (and optlen the bytes
 * needed) if the buffer is too small. Netfilter's getsockopt hands
 * optlen back only on success: after -ENOSPC the caller sees its own
 * optlen unchanged, and grows the buffer without knowing the size.
 */
struct bpfilter_held {
	__u64 netns;	/* net_cookie */
	__u64 gen;	/* as given to BPFILTER_SO_SET_PROGS */
	__u32 prog_id[BPFILTER_NUM_HOOKS];
	__u32 ctx_id;	/* map id */
};

#endif /* _BPFILTER_MSGFMT_H */
