/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every layout that the datapath (datapath.c) and the umh's Go code share:
 * the maps' keys and values, the records of the rules map, the per-CPU
 * traversal state and the configuration in .rodata. Go reads them through
 * bpf2go's generated types (datapath_bpfel.go), so each is defined here
 * only. The program context, struct bpfilter_ctx, is the module's
 * (kmod/progctx.h).
 */
#ifndef _BPFILTER_LAYOUT_H
#define _BPFILTER_LAYOUT_H

#include <linux/types.h>
#include "../../../../kmod/progctx.h"

/* The end of a list, and "no entry". */
#define NONE		0x7FFFFFFF
#define MAX_GROUPS	64
#define NUM_HOOKS	5	/* NF_INET_NUMHOOKS */
#define MAX_OPT_LEN	40	/* 60 - sizeof(struct tcphdr) */
/* Buffers whose sizes are powers of two, so that a load size masked into
 * them is bounded for the verifier: the first transport bytes (20 read),
 * the tcp options (MAX_OPT_LEN read).
 */
#define L4_BUF		32
#define OPT_BUF		64
#define MP_RANGES	15	/* XT_MULTI_PORTS */
#define MATCH_SIZE	68	/* bytes of match data in a record */
#define MAX_STEPS	(1 << 23)
/* class_key.group: the bucket of the group's entries whatever their ports */
#define GROUP_NOPORTS	0x100

/* record.action: what the entry's target does. */
enum action {
	ACT_DROP = 0,		/* DROP, ERROR */
	ACT_ACCEPT = 1,
	ACT_RETURN = 2,
	ACT_JUMP = 3,		/* push the entry, continue at target */
	ACT_GOTO = 4,		/* continue at target without a push */
	ACT_QUEUE = 5,		/* target is the NF_QUEUE verdict */
	ACT_CALLOUT = 6,	/* a kernel target: target is its extension */
};

/* record.kind: the match a record holds. */
enum kind {
	KIND_NONE = 0,
	KIND_PORTS = 1,		/* tcp, udp */
	KIND_ICMP = 2,
	KIND_MULTIPORT = 3,
	KIND_IPRANGE = 4,
	KIND_CONNTRACK = 5,
	KIND_STATE = 6,
	KIND_CALLOUT = 7,	/* a kernel match */
};

/* multiport_match.which */
enum mp_which { MP_SRC = 0, MP_DST = 1, MP_EITHER = 2 };

/* tcp_mt, udp_mt: host-order port ranges, tcp flags and option. */
struct ports_match {
	__u32 spt_lo, spt_hi, dpt_lo, dpt_hi;
	__u32 flg_mask, flg_cmp;
	__u32 inv;		/* XT_TCP_INV_SRCPT, _DSTPT, _FLAGS, _OPTION */
	__u32 tcp;		/* tcp: a fragment at offset 1 hotdrops */
	__u32 option;		/* tcp option kind to find, 0 for none */
};

struct icmp_match {
	__u32 type, code_min, code_max, inv;
};

struct mp_range {
	__u16 lo, hi;		/* empty: lo > hi */
};

/* ports_match_v1 */
struct multiport_match {
	enum mp_which which;
	__u32 inv;		/* 2: an invert beyond 1, true both ways */
	struct mp_range ranges[MP_RANGES];
};

/* iprange_mt4: host-order bounds */
struct iprange_match {
	__u32 flags, src_min, src_max, dst_min, dst_max;
};

/* conntrack_mt (revisions 1 to 3), IPv4 only. */
struct conntrack_match {
	__be32 addr[4];		/* origsrc, origdst, replsrc, repldst */
	__be32 mask[4];
	__u32 expires_min, expires_max;
	__u16 l4proto, match_flags, invert_flags;
	__u16 state_mask, status_mask;
	__u16 revision;
	__u16 port[4];		/* as the blob has them: network order up to
				 * revision 2, host order in revision 3 */
	__u16 port_high[4];	/* revision 3 */
};

/* state_mt */
struct state_match {
	__u32 mask;
};

struct callout_match {
	__u32 ext;		/* index of the extension (ctx->callout) */
};

union match {
	__u8 raw[MATCH_SIZE];	/* Go writes one of the structs below here */
	struct ports_match ports;
	struct icmp_match icmp;
	struct multiport_match multiport;
	struct iprange_match iprange;
	struct conntrack_match conntrack;
	struct state_match state;
	struct callout_match callout;
};

/*
 * A value of the rules map. Record i < number of entries is entry i: its
 * ipt_ip part and first match; an entry with more matches continues in
 * records after the entries (cont), whose ipt_ip part is zero.
 */
struct record {
	__be32 src, smsk, dst, dmsk;	/* network order */
	__u8 in[16] __attribute__((aligned(8)));
	__u8 in_mask[16];
	__u8 out[16];
	__u8 out_mask[16];
	__u32 proto;
	__u32 flags;		/* ipt_ip.flags & IPT_F_FRAG */
	__u32 inv;		/* ipt_ip.invflags */
	__u32 cont;		/* next record of the entry, or NONE */
	enum action action;
	__u32 target;		/* entry of a jump; verdict; extension */
	__u32 seg;		/* segment of the entry */
	enum kind kind;
	__u32 need;		/* transport bytes the match reads */
	union match m;
};

/* segs: a run of entries between chain starts. */
struct seg {
	__u32 end;		/* last entry */
	__u32 ghead;		/* first entry of the linear list, or NONE */
	__u64 gmask;		/* bit g: group g has buckets here */
	__u32 gpos;		/* place of the linear list in lists, or NONE */
	__u32 pad;
};

/* groups: a shape's masks, and the key bits all its keys agree on. */
struct group {
	__u32 smask, dmask, pmask, spmask, dpmask;
	__u32 agree_mask[4];	/* saddr, daddr, proto, ports */
	__u32 agree_val[4];
};

/* classes: a bucket. */
struct class_key {
	__u32 group;		/* | GROUP_NOPORTS */
	__u32 seg;
	__be32 saddr, daddr;
	__u32 proto;
	__u32 ports;		/* sport << 16 | dport */
};

struct class_val {
	__u32 first;		/* first entry */
	__u32 pos;		/* its place in lists */
};

/* counters (per CPU): struct xt_counters */
struct counter {
	__u64 packets, bytes;
};

/* What a search found (state.best_how). */
enum found {
	FOUND_MATCH = 0,
	FOUND_HOTDROP = 1,
	FOUND_CALLOUT = 2,	/* reached a kernel match */
};

/* state.phase: what a run after a callout resumes. */
enum phase {
	PHASE_NONE = 0,
	PHASE_MATCH = 1,	/* a kernel match of entry best */
	PHASE_TARGET = 2,	/* the kernel target of entry pos */
};

/* state.opt_st */
enum { OPT_NONE = 0, OPT_SCANNED = 1, OPT_HOTDROP = 2 };

/*
 * The traversal of one packet: the only value of the per-CPU state map,
 * so that a run after a callout continues where the last one stopped.
 */
struct traversal {
	__be32 saddr, daddr;	/* network order */
	__u32 saddr_h, daddr_h;	/* host order */
	__u32 proto;
	__u32 fragoff;		/* ntohs(frag_off) & IP_OFFSET */
	__u32 l4len;		/* tot_len - ihl * 4 */
	__u32 sport, dport;	/* host order, 0 without 4 transport bytes */
	__u32 tflags;		/* transport byte 13 */
	__u32 itype, icode;	/* transport bytes 0 and 1 */
	__u32 len;		/* bytes to count: tot_len */
	__u32 risky;		/* a match could hotdrop the packet */
	__u8 in[16] __attribute__((aligned(8)));
	__u8 out[16];
	__u32 pos;		/* entry where the next search starts */
	__u32 verdict;
	__u32 sp;		/* jump stack depth */
	__u32 under;		/* the hook's underflow */
	enum phase phase;
	__u32 single;		/* the walk finishes entry pos only */
	__u32 best;		/* lowest entry found, or NONE */
	enum found best_how;
	__u32 best_rec;		/* record of a kernel match */
	__u32 best_ext;
	__u32 action, target;	/* of the best entry */
	__u32 wc, wr;		/* walk: candidate entry, its record */
	__u32 wend;		/* walk: last entry to consider */
	__u32 wlinear;		/* walk: next candidate is wc + 1 */
	__u32 wl;		/* walk: place of wc in lists */
	__u32 seg, seg_end, ghead, gpos;
	__u64 gmask;
	__u32 opt_st, opt_len, opt_i, pad;
	__u64 opt_bits[4];	/* option kinds tcp_find_option visits */
	__u8 opts[OPT_BUF];
};

struct hook_cfg {
	__u32 start;		/* the hook's first entry */
	__u32 under;		/* its underflow */
	__u32 in, out;		/* the hook has an input / output interface */
	__u32 verdict;		/* first_*, ct_first: the verdict of entry start */
	/* Entry start is a conntrack or state match alone (no ipt_ip
	 * condition) with a verdict, e.g. ESTABLISHED,RELATED -j ACCEPT:
	 * the program tries it before reading the packet. */
	__u32 ct_first;
};

/* The program's constants, in .rodata (cfg). */
struct config {
	__u32 num_entries;
	__u32 num_records;
	__u32 num_groups;
	__u32 stack_size;	/* ip_tables' stacksize: the jump limit */
	__u32 stack_cap;	/* slots in a jstack value */
	__u32 need_in, need_out;	/* some rule compares an interface */
	__u32 need_l4;		/* some match reads the transport header */
	__u32 tcp_opts;		/* some tcp match looks for an option */
	__u32 linear;		/* no classification */
	__u32 callouts;		/* some rule has a kernel extension */
	__u32 conntrack;	/* some match reads conntrack */
	struct hook_cfg hooks[NUM_HOOKS];
};

#endif /* _BPFILTER_LAYOUT_H */
