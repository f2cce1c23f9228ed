/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What bpfilter's programs see and return at netfilter's hooks.
 *
 * The module runs the program of a hook on every IPv4 packet at
 * NF_INET_LOCAL_IN, NF_INET_FORWARD and NF_INET_LOCAL_OUT, priority
 * NF_IP_PRI_FILTER: where iptable_filter runs. The program is a
 * BPF_PROG_TYPE_SCHED_CLS program: its context is the skb (__sk_buff),
 * whose data starts at the IPv4 header. It must not write __sk_buff.cb[]
 * (the module restores skb->cb after the run anyway: IPCB lives there).
 *
 * What the hook adds is in struct bpfilter_ctx, the single value (key 0)
 * of a per-CPU array that the module fills before each run with bottom
 * halves disabled, so that nothing else runs the program on that CPU
 * meanwhile.
 *
 * The datapath's BPF C includes this header, and Go reads it through
 * bpf2go's generated types.
 */
#ifndef _BPFILTER_PROGCTX_H
#define _BPFILTER_PROGCTX_H

#include <linux/types.h>

#define BPFILTER_IFNAMSIZ	16	/* IFNAMSIZ */

/* bpfilter_ctx.flags */
#define BPFILTER_CTX_RESUME	0x1	/* a rerun after a callout: see below */
#define BPFILTER_CTX_CT		0x2	/* the ct_* fields are filled */

struct bpfilter_ctx {
	__u32 hook;		/* NF_INET_LOCAL_IN (1), _FORWARD (2), _LOCAL_OUT (3) */
	__u32 in_ifindex;	/* 0: no input interface (OUTPUT) */
	__u32 out_ifindex;	/* 0: no output interface (INPUT) */
	__u32 flags;		/* BPFILTER_CTX_* */
	/* The interfaces' names as ip_tables compares them: all IFNAMSIZ
	 * bytes of net_device.name, or all zero for none (nulldevname).
	 */
	char in[BPFILTER_IFNAMSIZ];
	char out[BPFILTER_IFNAMSIZ];

	/*
	 * Callouts. callout (out): the index of the extension to run, among
	 * those handed over with the programs. result (in, on resume): 1 if
	 * the match matched, 0 if not; 1 after a target that continued.
	 */
	__u32 callout;
	__u32 result;

	/*
	 * Conntrack, as xt_conntrack and xt_state read it: filled when the
	 * programs were handed over with BPFILTER_PROGS_CONNTRACK
	 * (BPFILTER_CTX_CT set), else zero. Without an entry (ct_present 0)
	 * only ct_info is meaningful: IP_CT_UNTRACKED (7) for an untracked
	 * packet, anything else is INVALID. The state bits are each match's
	 * own: XT_STATE_BIT(ct_info) for both, but UNTRACKED is 1 << 6 for
	 * xt_state and 1 << 8 for xt_conntrack.
	 */
	__u32 ct_present;	/* 1: nf_ct_get() found an entry */
	__u32 ct_info;		/* enum ip_conntrack_info from nf_ct_get() */
	__u32 ct_status;	/* nf_conn.status (IPS_*), host order */
	__u32 ct_dir;		/* CTINFO2DIR: 0 original, 1 reply */
	__u32 ct_proto;		/* original tuple's dst.protonum */
	__u32 ct_expires;	/* nf_ct_expires() / HZ: seconds left */
	__be32 ct_orig_src;	/* tuplehash[IP_CT_DIR_ORIGINAL].tuple.src.u3.ip */
	__be32 ct_orig_dst;
	__be32 ct_repl_src;	/* tuplehash[IP_CT_DIR_REPLY] */
	__be32 ct_repl_dst;
	__be16 ct_orig_sport;	/* tuple.src.u.all, network order */
	__be16 ct_orig_dport;	/* tuple.dst.u.all */
	__be16 ct_repl_sport;
	__be16 ct_repl_dport;
};

/*
 * The program returns a netfilter verdict, as an ip_tables target would:
 * NF_DROP (0), NF_ACCEPT (1), or NF_QUEUE (3) with the queue number in the
 * upper 16 bits and BPFILTER_VERDICT_QUEUE_BYPASS (NF_VERDICT_FLAG_QUEUE_BYPASS)
 * for --queue-bypass. Anything else is dropped, and logged once.
 *
 * Or it asks for a callout: BPFILTER_VERDICT_CALLOUT with ctx->callout
 * the index of one of the kernel extensions handed over with the
 * programs (struct bpfilter_ext in msgfmt.h), which the module checked
 * with xt_check_match()/xt_check_target() as ip_tables would. The module
 * restores skb->cb and runs it as ipt_do_table would:
 * - a match: ctx->result is what ->match() returned; a hotdrop drops the
 *   packet;
 * - a target: a verdict other than XT_CONTINUE is the packet's verdict
 *   (REJECT's NF_DROP); XT_CONTINUE (LOG) sets ctx->result to 1.
 * Then it sets BPFILTER_CTX_RESUME in ctx->flags and runs the program
 * again on the same CPU, bottom halves still off: the program continues
 * its traversal where it left it, from state it kept in a per-CPU map of
 * its own. On the first run of a packet ctx->flags has no
 * BPFILTER_CTX_RESUME. At most BPFILTER_MAX_CALLOUTS callouts per packet:
 * past that, the packet is dropped and that logged once.
 */
#define BPFILTER_VERDICT_DROP		0
#define BPFILTER_VERDICT_ACCEPT		1
#define BPFILTER_VERDICT_QUEUE		3
#define BPFILTER_VERDICT_QUEUE_BYPASS	0x8000
#define BPFILTER_VERDICT_QUEUE_SHIFT	16
#define BPFILTER_VERDICT_CALLOUT	0x10
#define BPFILTER_MAX_CALLOUTS		4096

#endif /* _BPFILTER_PROGCTX_H */
