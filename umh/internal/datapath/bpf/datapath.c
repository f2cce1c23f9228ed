// SPDX-License-Identifier: GPL-2.0
/*
 * bpfilter's per-packet program: ipt_do_table over rules held in maps.
 * See ../doc.go for the design; layout.h for every shared layout.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "layout.h"

char LICENSE[] SEC("license") = "GPL";

#define IPPROTO_ICMP_	1
#define IPPROTO_TCP_	6
#define IPPROTO_UDP_	17
#define IP_OFFSET_	0x1FFF

/* ipt_ip.invflags, ipt_ip.flags */
#define IPT_INV_VIA_IN	0x01
#define IPT_INV_VIA_OUT	0x02
#define IPT_INV_SRCIP	0x08
#define IPT_INV_DSTIP	0x10
#define IPT_INV_FRAG	0x20
#define IPT_INV_PROTO	0x40
#define IPT_F_FRAG	0x01

/* tcp and udp invflags (the same bits), icmp, iprange */
#define INV_SRCPT	0x01
#define INV_DSTPT	0x02
#define INV_FLAGS	0x04
#define INV_OPTION	0x08
#define IPRANGE_SRC	0x01
#define IPRANGE_DST	0x02
#define IPRANGE_SRC_INV	0x10
#define IPRANGE_DST_INV	0x20

/* xt_conntrack */
#define CT_STATE	(1 << 0)
#define CT_PROTO	(1 << 1)
#define CT_ORIGSRC	(1 << 2)
#define CT_ORIGDST	(1 << 3)
#define CT_REPLSRC	(1 << 4)
#define CT_REPLDST	(1 << 5)
#define CT_STATUS	(1 << 6)
#define CT_EXPIRES	(1 << 7)
#define CT_ORIGSRC_PORT	(1 << 8)
#define CT_ORIGDST_PORT	(1 << 9)
#define CT_REPLSRC_PORT	(1 << 10)
#define CT_REPLDST_PORT	(1 << 11)
#define CT_DIRECTION	(1 << 12)
#define CT_STATE_INVALID	(1 << 0)
#define CT_STATE_SNAT		(1 << 6)
#define CT_STATE_DNAT		(1 << 7)
#define CT_STATE_UNTRACKED	(1 << 8)
#define XT_STATE_INVALID	(1 << 0)
#define XT_STATE_UNTRACKED	(1 << 6)
#define IP_CT_IS_REPLY		3
#define IP_CT_UNTRACKED		7
#define IPS_SRC_NAT		(1 << 4)
#define IPS_DST_NAT		(1 << 5)

/* bpf_loop's context must be on the stack: it points to the state. */
struct loop_ctx {
	struct traversal *st;
};

/* What a record's evaluation gives. */
enum { EV_OK, EV_FAIL, EV_HOTDROP, EV_CALLOUT };

/* What step_begin and group_begin return. */
enum { BEGIN_STOP = 0, BEGIN_WALK = 1, BEGIN_GROUPS = 2, GROUP_BEST = 2 };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct record);
	__uint(max_entries, 1);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct class_key);
	__type(value, struct class_val);
	__uint(max_entries, 1);
} classes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct seg);
	__uint(max_entries, 1);
} segs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct group);
	__uint(max_entries, 1);
} groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} lists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(max_entries, 1);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct bpfilter_ctx);
	__uint(max_entries, 1);
} ctx SEC(".maps");

/* One row per possible CPU (bpf_get_smp_processor_id): stack_cap u32
 * slots; Go sets the value size. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} jstack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct traversal);
	__uint(max_entries, 1);
} state SEC(".maps");

const volatile struct config cfg = {};

/* NF_INVF: mismatch m, inverted by flag. */
static __always_inline int invf(__u32 inv, __u32 flag, int m)
{
	return !!m ^ !!(inv & flag);
}

static __always_inline int ifname_differs(const __u8 *pkt, const __u8 *name, const __u8 *mask)
{
	__u64 a = (*(const __u64 *)pkt ^ *(const __u64 *)name) & *(const __u64 *)mask;
	__u64 b = (*(const __u64 *)(pkt + 8) ^ *(const __u64 *)(name + 8)) & *(const __u64 *)(mask + 8);

	return (a | b) != 0;
}

/* ip_packet_match: 1 if the record's ipt_ip part matches. */
static __always_inline int ip_match(const struct traversal *st, const struct record *r)
{
	__u32 inv = r->inv;

	if (invf(inv, IPT_INV_SRCIP, (st->saddr & r->smsk) != r->src) ||
	    invf(inv, IPT_INV_DSTIP, (st->daddr & r->dmsk) != r->dst))
		return 0;
	if (cfg.need_in) {
		if (invf(inv, IPT_INV_VIA_IN, ifname_differs(st->in, r->in, r->in_mask)))
			return 0;
	} else if (inv & IPT_INV_VIA_IN) {
		return 0;	/* no mask anywhere: the names never differ */
	}
	if (cfg.need_out) {
		if (invf(inv, IPT_INV_VIA_OUT, ifname_differs(st->out, r->out, r->out_mask)))
			return 0;
	} else if (inv & IPT_INV_VIA_OUT) {
		return 0;
	}
	if (r->proto && invf(inv, IPT_INV_PROTO, st->proto != r->proto))
		return 0;
	if (invf(inv, IPT_INV_FRAG, (r->flags & IPT_F_FRAG) && !st->fragoff))
		return 0;
	return 1;
}

static __always_inline int in_range(__u32 v, __u32 lo, __u32 hi)
{
	return v >= lo && v <= hi;
}

/* tcp_mt, udp_mt once the header is there. */
static __always_inline int ports_eval(const struct traversal *st, const struct ports_match *m)
{
	__u32 inv = m->inv;

	if (invf(inv, INV_SRCPT, !in_range(st->sport, m->spt_lo, m->spt_hi)) ||
	    invf(inv, INV_DSTPT, !in_range(st->dport, m->dpt_lo, m->dpt_hi)) ||
	    invf(inv, INV_FLAGS, (st->tflags & m->flg_mask) != m->flg_cmp))
		return EV_FAIL;
	if (cfg.tcp_opts && m->option) {
		__u32 k = m->option & 0xFF;
		int found;

		if (st->opt_st == OPT_HOTDROP)
			return EV_HOTDROP;
		found = st->opt_st == OPT_SCANNED && ((st->opt_bits[(k >> 6) & 3] >> (k & 63)) & 1);
		if (invf(inv, INV_OPTION, !found))
			return EV_FAIL;
	}
	return EV_OK;
}

static __always_inline int icmp_eval(const struct traversal *st, const struct icmp_match *m)
{
	int hit = m->type == 0xFF ||
		  (st->itype == m->type && in_range(st->icode, m->code_min, m->code_max));

	return (hit ^ !!m->inv) ? EV_OK : EV_FAIL;
}

/* ports_match_v1: a port outside 0..65535 is not compared. */
static __always_inline int multiport_eval(const struct traversal *st, const struct multiport_match *m)
{
	__u32 s = st->sport, d = st->dport;
	int hit = 0;

	if (m->inv == 2)
		return EV_OK;
	if (m->which == MP_DST)
		s = 0x10000;
	if (m->which == MP_SRC)
		d = 0x10000;
#pragma unroll
	for (int k = 0; k < MP_RANGES; k++) {
		__u32 lo = m->ranges[k].lo, hi = m->ranges[k].hi;

		if (in_range(s, lo, hi) || in_range(d, lo, hi)) {
			hit = 1;
			break;
		}
	}
	return (hit ^ !!m->inv) ? EV_OK : EV_FAIL;
}

static __always_inline int iprange_eval(const struct traversal *st, const struct iprange_match *m)
{
	__u32 f = m->flags;

	if ((f & IPRANGE_SRC) &&
	    invf(f, IPRANGE_SRC_INV, !in_range(st->saddr_h, m->src_min, m->src_max)))
		return EV_FAIL;
	if ((f & IPRANGE_DST) &&
	    invf(f, IPRANGE_DST_INV, !in_range(st->daddr_h, m->dst_min, m->dst_max)))
		return EV_FAIL;
	return EV_OK;
}

/* What nf_ct_get() gave, from the ctx the module filled. */
static __always_inline const struct bpfilter_ctx *ct_of(void)
{
	__u32 zero = 0;
	const struct bpfilter_ctx *c = bpf_map_lookup_elem(&ctx, &zero);

	if (c && (c->flags & BPFILTER_CTX_CT))
		return c;
	return NULL;
}

/* xt_state's state_mt */
static __always_inline int state_eval(const struct state_match *m)
{
	const struct bpfilter_ctx *c = ct_of();
	__u32 bit = XT_STATE_INVALID;

	if (c && c->ct_present)
		bit = 1 << (c->ct_info % IP_CT_IS_REPLY + 1);
	else if (c && c->ct_info == IP_CT_UNTRACKED)
		bit = XT_STATE_UNTRACKED;
	return (m->mask & bit) ? EV_OK : EV_FAIL;
}

static __always_inline int ct_addr(__be32 k, __be32 a, __be32 m)
{
	return ((k ^ a) & m) == 0;
}

/* ct_proto_port_check (v1, v2: equality in network order) and
 * ct_proto_port_check_v3 (host-order ranges) for one port. */
static __always_inline int ct_port(const struct conntrack_match *m, int i, __be16 port, __u32 flag)
{
	__u32 inv = m->invert_flags & flag;

	if (!(m->match_flags & flag))
		return 1;
	if (m->revision != 3)
		return !((port == m->port[i]) ^ !inv);
	return in_range(bpf_ntohs(port), m->port[i], m->port_high[i]) ^ !!inv;
}

/* xt_conntrack's conntrack_mt */
static __always_inline int conntrack_eval(const struct conntrack_match *m)
{
	const struct bpfilter_ctx *c = ct_of();
	__u32 mf = m->match_flags, inv = m->invert_flags;
	__u32 bit = CT_STATE_INVALID;
	int present = c && c->ct_present;

	if (present)
		bit = 1 << (c->ct_info % IP_CT_IS_REPLY + 1);
	else if (c && c->ct_info == IP_CT_UNTRACKED)
		bit = CT_STATE_UNTRACKED;
	if (mf & CT_STATE) {
		if (present) {
			if (c->ct_status & IPS_SRC_NAT)
				bit |= CT_STATE_SNAT;
			if (c->ct_status & IPS_DST_NAT)
				bit |= CT_STATE_DNAT;
		}
		if (!!(m->state_mask & bit) ^ !(inv & CT_STATE))
			return EV_FAIL;
	}
	if (!present || !c)
		return (mf & CT_STATE) ? EV_OK : EV_FAIL;
	if ((mf & CT_DIRECTION) && ((c->ct_dir == 0) ^ !(inv & CT_DIRECTION)))
		return EV_FAIL;
	if ((mf & CT_ORIGSRC) && (ct_addr(c->ct_orig_src, m->addr[0], m->mask[0]) ^ !(inv & CT_ORIGSRC)))
		return EV_FAIL;
	if ((mf & CT_ORIGDST) && (ct_addr(c->ct_orig_dst, m->addr[1], m->mask[1]) ^ !(inv & CT_ORIGDST)))
		return EV_FAIL;
	if ((mf & CT_REPLSRC) && (ct_addr(c->ct_repl_src, m->addr[2], m->mask[2]) ^ !(inv & CT_REPLSRC)))
		return EV_FAIL;
	if ((mf & CT_REPLDST) && (ct_addr(c->ct_repl_dst, m->addr[3], m->mask[3]) ^ !(inv & CT_REPLDST)))
		return EV_FAIL;
	if ((mf & CT_PROTO) && ((c->ct_proto == m->l4proto) ^ !(inv & CT_PROTO)))
		return EV_FAIL;
	if (!ct_port(m, 0, c->ct_orig_sport, CT_ORIGSRC_PORT) ||
	    !ct_port(m, 1, c->ct_orig_dport, CT_ORIGDST_PORT) ||
	    !ct_port(m, 2, c->ct_repl_sport, CT_REPLSRC_PORT) ||
	    !ct_port(m, 3, c->ct_repl_dport, CT_REPLDST_PORT))
		return EV_FAIL;
	if ((mf & CT_STATUS) && (!!(m->status_mask & c->ct_status) ^ !(inv & CT_STATUS)))
		return EV_FAIL;
	if ((mf & CT_EXPIRES) &&
	    (in_range(c->ct_expires, m->expires_min, m->expires_max) ^ !(inv & CT_EXPIRES)))
		return EV_FAIL;
	return EV_OK;
}

/* The match of a record: tcp, udp, icmp and multiport fail on later
 * fragments (tcp hotdrops one at offset 1) and hotdrop a transport header
 * shorter than they read. */
static __always_inline int match_eval(const struct traversal *st, const struct record *r)
{
	__u32 kind = r->kind;

	switch ((int)kind) {
	case KIND_NONE:
		return EV_OK;
	case KIND_IPRANGE:
		return iprange_eval(st, &r->m.iprange);
	case KIND_CONNTRACK:
		return conntrack_eval(&r->m.conntrack);
	case KIND_STATE:
		return state_eval(&r->m.state);
	case KIND_CALLOUT:
		return EV_CALLOUT;
	}
	if (st->fragoff) {
		if (kind == KIND_PORTS && r->m.ports.tcp && st->fragoff == 1)
			return EV_HOTDROP;
		return EV_FAIL;
	}
	if (st->l4len < r->need)
		return EV_HOTDROP;
	switch ((int)kind) {
	case KIND_PORTS:
		return ports_eval(st, &r->m.ports);
	case KIND_ICMP:
		return icmp_eval(st, &r->m.icmp);
	case KIND_MULTIPORT:
		return multiport_eval(st, &r->m.multiport);
	}
	return EV_FAIL;
}

/*
 * Global functions: the verifier checks each once, for any state, which
 * keeps its work independent of the table. Each checks st for NULL.
 */

/* One record of the walk: candidate entry st->wc, record st->wr. A
 * candidate that fails moves to the next one (wc + 1, or the next in
 * lists). Returns 1 to stop the walk. */
__attribute__((noinline)) int walk_one(struct traversal *st)
{
	struct record *r;
	__u32 c, ri, next;
	__u32 *p;
	int ev;

	if (!st)
		return 1;
	c = st->wc;
	ri = st->wr;
	if (c == ri && (c >= st->best || c > st->wend))
		return 1;
	r = bpf_map_lookup_elem(&rules, &ri);
	if (!r)
		return 1;
	if (c == ri && c < st->pos)
		goto advance;
	ev = EV_FAIL;
	if (ip_match(st, r))
		ev = match_eval(st, r);
	if (ev == EV_FAIL)
		goto advance;
	if (ev == EV_OK && r->cont != NONE) {
		st->wr = r->cont;
		return 0;
	}
	st->best = c;
	st->best_how = ev == EV_OK ? FOUND_MATCH : ev == EV_HOTDROP ? FOUND_HOTDROP : FOUND_CALLOUT;
	st->best_rec = ri;
	st->best_ext = r->m.callout.ext;
	st->action = r->action;
	st->target = r->target;
	return 1;

advance:
	if (st->wlinear) {
		next = c + 1;
	} else {
		/* A key on the stack: 6.1's helpers take no PTR_TO_MEM key. */
		__u32 wl = ++st->wl;

		p = bpf_map_lookup_elem(&lists, &wl);
		if (!p)
			return 1;
		next = *p;
	}
	st->wc = next;
	st->wr = next;
	return 0;
}

static long walk_cb(__u32 i, void *data)
{
	return walk_one(((struct loop_ctx *)data)->st) & 1;
}

/* Sets the walk on the packet's bucket of group g: its key under the
 * group's masks; for a packet some match could hotdrop, the group's
 * bucket whatever the ports. */
__attribute__((noinline)) int group_begin(struct traversal *st, __u32 g)
{
	struct class_key k = {};
	struct class_val *v;
	struct group *gr;
	__u32 f;

	if (!st || g >= MAX_GROUPS || !((st->gmask >> g) & 1))
		return BEGIN_STOP;
	if (st->best == st->pos)
		return GROUP_BEST;	/* nothing can beat it */
	gr = bpf_map_lookup_elem(&groups, &g);
	if (!gr)
		return BEGIN_STOP;
	k.group = g;
	k.seg = st->seg;
	f = st->proto & gr->pmask;
	if ((f & gr->agree_mask[2]) != gr->agree_val[2])
		return BEGIN_STOP;
	k.proto = f;
	f = st->saddr & gr->smask;
	if ((f & gr->agree_mask[0]) != gr->agree_val[0])
		return BEGIN_STOP;
	k.saddr = f;
	f = st->daddr & gr->dmask;
	if ((f & gr->agree_mask[1]) != gr->agree_val[1])
		return BEGIN_STOP;
	k.daddr = f;
	if (st->risky && (gr->spmask | gr->dpmask)) {
		k.group |= GROUP_NOPORTS;
	} else {
		f = (st->sport & gr->spmask) << 16 | (st->dport & gr->dpmask);
		if ((f & gr->agree_mask[3]) != gr->agree_val[3])
			return BEGIN_STOP;
		k.ports = f;
	}
	v = bpf_map_lookup_elem(&classes, &k);
	if (!v)
		return BEGIN_STOP;
	st->wc = v->first;
	st->wr = v->first;
	st->wl = v->pos;
	return BEGIN_WALK;
}

static long group_cb(__u32 g, void *data)
{
	int r = group_begin(((struct loop_ctx *)data)->st, g);

	if (r == BEGIN_STOP)
		return 0;
	if (r == GROUP_BEST)
		return 1;
	bpf_loop(cfg.num_records + 1, walk_cb, data, 0);
	return 0;
}

/* Prepares the search for the first entry at or after st->pos that
 * matches (or hotdrops, or reaches a kernel match). */
__attribute__((noinline)) int step_begin(struct traversal *st)
{
	struct record *r;
	struct seg *s;
	__u32 pos, si;

	if (!st)
		return BEGIN_STOP;
	if (st->single)
		return BEGIN_WALK;	/* set by resume() */
	pos = st->pos;
	st->best = NONE;
	if (pos >= cfg.num_entries)
		goto drop;
	if (cfg.linear) {
		st->wc = pos;
		st->wr = pos;
		st->wend = cfg.num_entries - 1;
		st->wlinear = 1;
		return BEGIN_WALK;
	}
	r = bpf_map_lookup_elem(&rules, &pos);
	if (!r)
		goto drop;
	si = r->seg;
	s = bpf_map_lookup_elem(&segs, &si);
	if (!s)
		goto drop;
	st->seg = si;
	st->seg_end = s->end;
	st->wend = s->end;
	st->ghead = s->ghead;
	st->wc = s->ghead;
	st->wr = s->ghead;
	st->gpos = s->gpos;
	st->wl = s->gpos;
	st->wlinear = 0;
	st->gmask = s->gmask;
	if (cfg.num_groups && s->gmask)
		return BEGIN_GROUPS;
	return BEGIN_WALK;
drop:
	st->verdict = BPFILTER_VERDICT_DROP;
	return BEGIN_STOP;
}

/* After the groups: the walk of the segment's linear list. */
__attribute__((noinline)) int step_list(struct traversal *st)
{
	if (!st)
		return 0;
	st->wc = st->ghead;
	st->wr = st->ghead;
	st->wl = st->gpos;
	return 0;
}

static __always_inline __u32 *jstack_row(void)
{
	__u32 cpu = bpf_get_smp_processor_id();

	return bpf_map_lookup_elem(&jstack, &cpu);
}

static __always_inline int callout(struct traversal *st, __u32 phase, __u32 ext)
{
	__u32 zero = 0;
	struct bpfilter_ctx *c = bpf_map_lookup_elem(&ctx, &zero);

	if (!c) {
		st->verdict = BPFILTER_VERDICT_DROP;
		return 1;
	}
	c->callout = ext;
	st->phase = phase;
	st->verdict = BPFILTER_VERDICT_CALLOUT;
	return 1;
}

/* The search's result: count the entry found and apply its target; none
 * found moves on to the next segment, as ipt_do_table walks on past a
 * chain's end. Returns 1 once the verdict is set. */
__attribute__((noinline)) int step_end(struct traversal *st)
{
	struct counter *cnt;
	__u32 b, sp, *row;

	if (!st)
		return 1;
	b = st->best;
	if (b == NONE) {
		if (st->single) {
			st->single = 0;
			st->pos++;
			return 0;
		}
		if (st->wlinear) {
			st->verdict = BPFILTER_VERDICT_DROP;
			return 1;
		}
		st->pos = st->seg_end + 1;
		return 0;
	}
	st->single = 0;
	if (st->best_how == FOUND_HOTDROP)
		goto drop;
	if (st->best_how == FOUND_CALLOUT)
		return callout(st, PHASE_MATCH, st->best_ext);

	cnt = bpf_map_lookup_elem(&counters, &b);
	if (cnt) {
		cnt->packets++;
		cnt->bytes += st->len;
	}
	switch ((int)st->action) {
	case ACT_ACCEPT:
		st->verdict = BPFILTER_VERDICT_ACCEPT;
		return 1;
	case ACT_QUEUE:
		st->verdict = st->target;
		return 1;
	case ACT_CALLOUT:
		st->pos = b;
		return callout(st, PHASE_TARGET, st->target);
	case ACT_RETURN:
		sp = st->sp;
		if (sp == 0) {
			st->pos = st->under;
			return 0;
		}
		/* Decrement, then bound: 6.1's verifier learns no lower
		 * bound from sp != 0, so sp - 1 after a check of sp would be
		 * unbounded.
		 */
		sp--;
		row = jstack_row();
		if (!row || sp >= cfg.stack_cap)
			goto drop;
		st->sp = sp;
		st->pos = row[sp] + 1;
		return 0;
	case ACT_JUMP:
		sp = st->sp;
		if (sp >= cfg.stack_size || sp >= cfg.stack_cap)
			goto drop;
		row = jstack_row();
		if (!row)
			goto drop;
		row[sp] = b;
		st->sp = sp + 1;
		/* fall through */
	case ACT_GOTO:
		st->pos = st->target;
		return 0;
	}
drop:
	st->verdict = BPFILTER_VERDICT_DROP;
	return 1;
}

/* One ipt_do_table iteration. */
static long step_cb(__u32 i, void *data)
{
	struct traversal *st = ((struct loop_ctx *)data)->st;
	int r = step_begin(st);

	if (r == BEGIN_STOP)
		return 1;
	if (r == BEGIN_GROUPS) {
		bpf_loop(cfg.num_groups, group_cb, data, 0);
		step_list(st);
	}
	bpf_loop(cfg.num_records + 1, walk_cb, data, 0);
	return step_end(st) & 1;
}

/* tcp_find_option's walk over the options, one position per call:
 *	if (op[i] < 2 || i == optlen - 1) i++;
 *	else i += op[i + 1] ? : 1;
 * setting the bit of each kind it visits. */
static long optscan_cb(__u32 n, void *data)
{
	struct traversal *st = ((struct loop_ctx *)data)->st;
	__u32 i = st->opt_i, len = st->opt_len, k, step = 1;

	if (i >= len || i >= MAX_OPT_LEN)
		return 1;
	k = st->opts[i];
	st->opt_bits[(k >> 6) & 3] |= 1ULL << (k & 63);
	if (k >= 2 && i + 1 < len && i + 1 < MAX_OPT_LEN && st->opts[i + 1])
		step = st->opts[i + 1];
	st->opt_i = i + step;
	return 0;
}

/* A run after a callout: ctx->result is the outcome. Returns 1 to go on
 * with the traversal, 0 when st->verdict is final. */
__attribute__((noinline)) int resume(struct traversal *st, __u32 result)
{
	struct record *r;
	__u32 ri;

	if (!st)
		return 0;
	switch (st->phase) {
	case PHASE_TARGET:
		st->phase = PHASE_NONE;
		st->pos++;	/* XT_CONTINUE */
		return 1;
	case PHASE_MATCH:
		st->phase = PHASE_NONE;
		if (!result) {
			st->pos = st->best + 1;
			return 1;
		}
		ri = st->best_rec;
		r = bpf_map_lookup_elem(&rules, &ri);
		if (!r)
			break;
		st->pos = st->best;
		if (r->cont == NONE) {
			/* the entry's last match: it matched */
			st->best_how = FOUND_MATCH;
			if (step_end(st))
				return 0;
			return 1;
		}
		st->single = 1;
		st->wc = st->best;
		st->wr = r->cont;
		st->wend = st->best;
		st->wlinear = 1;
		st->best = NONE;
		return 1;
	case PHASE_NONE:
		break;
	}
	st->verdict = BPFILTER_VERDICT_DROP;
	return 0;
}

/* The IPv4 header as the IP layer guarantees it at the hooks; 0 for a
 * packet ip_tables would never see (let through unexamined). */
static __always_inline int ip_header(struct __sk_buff *skb, __u8 *iph, __u32 *ihl, __u32 *tot)
{
	if (bpf_skb_load_bytes_relative(skb, 0, iph, 20, BPF_HDR_START_NET))
		return 0;
	if (iph[0] >> 4 != 4)
		return 0;
	*ihl = (iph[0] & 0xF) * 4;
	if (*ihl < 20)
		return 0;
	*tot = bpf_ntohs(*(__u16 *)(iph + 2));
	/*
	 * IPv4 BIG TCP (6.3+): a GSO packet over 64 KiB has tot_len 0; its
	 * length is the skb's, as skb_ip_totlen() says.
	 */
	if (*tot == 0 && skb->gso_size)
		*tot = skb->len;
	if (*tot < *ihl)
		return 0;
	return 1;
}

/* Reads the packet into the state. Returns 0 to let it through. */
static __always_inline int init(struct __sk_buff *skb, struct traversal *st, const __u32 hook)
{
	__u8 iph[20] __attribute__((aligned(8)));
	__u8 l4[L4_BUF] __attribute__((aligned(8)));
	__u32 ihl, tot, n, zero = 0;
	struct loop_ctx lc = { .st = st };

	if (!ip_header(skb, iph, &ihl, &tot))
		return 0;
	__builtin_memset(st, 0, sizeof(*st));
	st->len = tot;
	st->l4len = tot - ihl;
	st->fragoff = bpf_ntohs(*(__u16 *)(iph + 6)) & IP_OFFSET_;
	st->proto = iph[9];
	st->saddr = *(__u32 *)(iph + 12);
	st->daddr = *(__u32 *)(iph + 16);
	st->saddr_h = bpf_ntohl(st->saddr);
	st->daddr_h = bpf_ntohl(st->daddr);
	st->pos = cfg.hooks[hook].start;
	st->under = cfg.hooks[hook].under;
	st->verdict = BPFILTER_VERDICT_DROP;

	if (cfg.need_l4 && st->fragoff == 0 && st->l4len >= 1) {
		n = st->l4len;
		if (n > 20)
			n = 20;
		/* n is 1..20 here. 6.1's verifier learns no lower bound
		 * from n != 0 and clang compares copies: bound the register
		 * passed by arithmetic it cannot see through (1..L4_BUF).
		 */
		barrier_var(n);
		n = ((n - 1) & (L4_BUF - 1)) + 1;
		if (bpf_skb_load_bytes_relative(skb, ihl, l4, n, BPF_HDR_START_NET))
			return 0;
		if (st->l4len >= 4) {
			st->sport = bpf_ntohs(*(__u16 *)l4);
			st->dport = bpf_ntohs(*(__u16 *)(l4 + 2));
			st->itype = l4[0];
			st->icode = l4[1];
		}
		if (st->l4len >= 14)
			st->tflags = l4[13];
		if (cfg.tcp_opts && st->proto == IPPROTO_TCP_ && st->l4len >= 20) {
			__u32 doff = (l4[12] >> 4) * 4;

			if (doff < 20) {
				st->opt_st = OPT_HOTDROP;
			} else if (doff > 20) {
				n = doff - 20;
				if (doff > st->l4len || n > MAX_OPT_LEN) {
					st->opt_st = OPT_HOTDROP;
				} else {
					/* 1..40, bounded for 6.1 as above */
					barrier_var(n);
					n = ((n - 1) & (OPT_BUF - 1)) + 1;
					if (bpf_skb_load_bytes_relative(skb, ihl + 20, st->opts, n, BPF_HDR_START_NET))
						return 0;
					st->opt_len = n;
					st->opt_st = OPT_SCANNED;
					bpf_loop(MAX_OPT_LEN, optscan_cb, &lc, 0);
				}
			}
		}
	}
	/* Could a match hotdrop it? Then the groups keyed by ports look in
	 * their buckets without ports: an entry hotdrops whatever its ports. */
	if (cfg.need_l4 && !cfg.linear) {
		__u32 need = 0;

		switch (st->proto) {
		case IPPROTO_TCP_:
			need = 20;
			break;
		case IPPROTO_UDP_:
		case IPPROTO_ICMP_:
			need = 8;
			break;
		case 33: case 132: case 136:	/* multiport's other protocols */
			need = 4;
			break;
		}
		if (st->opt_st == OPT_HOTDROP ||
		    (st->fragoff == 0 && st->l4len < need) ||
		    (st->fragoff == 1 && st->proto == IPPROTO_TCP_))
			st->risky = 1;
	}
	if ((cfg.need_in && cfg.hooks[hook].in) || (cfg.need_out && cfg.hooks[hook].out)) {
		struct bpfilter_ctx *c = bpf_map_lookup_elem(&ctx, &zero);

		if (c) {
			if (cfg.need_in && cfg.hooks[hook].in)
				__builtin_memcpy(st->in, c->in, 16);
			if (cfg.need_out && cfg.hooks[hook].out)
				__builtin_memcpy(st->out, c->out, 16);
		}
	}
	return 1;
}

/*
 * A hook whose first entry is a conntrack or state match alone with a
 * verdict (cfg ct_first): if the match matches, the packet is counted
 * and decided as the walk would decide it, without reading more than
 * the IP header. Returns the verdict, or -1 for the walk (the entry
 * fails there again).
 */
static __always_inline int ct_first(struct __sk_buff *skb, const __u32 hook)
{
	__u8 iph[20] __attribute__((aligned(8)));
	__u32 ihl, tot, e = cfg.hooks[hook].start;
	const struct record *r;
	struct counter *cnt;
	int ev;

	r = bpf_map_lookup_elem(&rules, &e);
	if (!r)
		return -1;
	if (r->kind == KIND_CONNTRACK)
		ev = conntrack_eval(&r->m.conntrack);
	else if (r->kind == KIND_STATE)
		ev = state_eval(&r->m.state);
	else
		return -1;
	if (ev != EV_OK)
		return -1;
	if (!ip_header(skb, iph, &ihl, &tot))
		return BPFILTER_VERDICT_ACCEPT;
	cnt = bpf_map_lookup_elem(&counters, &e);
	if (cnt) {
		cnt->packets++;
		cnt->bytes += tot;
	}
	return cfg.hooks[hook].verdict;
}

static __always_inline int run(struct __sk_buff *skb, const __u32 hook)
{
	__u32 zero = 0;
	struct traversal *st;
	struct loop_ctx lc;

	if (cfg.callouts) {
		struct bpfilter_ctx *c = bpf_map_lookup_elem(&ctx, &zero);

		if (c && (c->flags & BPFILTER_CTX_RESUME)) {
			st = bpf_map_lookup_elem(&state, &zero);
			if (!st)
				return BPFILTER_VERDICT_DROP;
			if (!resume(st, c->result))
				return st->verdict;
			lc.st = st;
			goto loop;
		}
	}
	if (cfg.hooks[hook].ct_first) {
		int v = ct_first(skb, hook);

		if (v >= 0)
			return v;
	}
	st = bpf_map_lookup_elem(&state, &zero);
	if (!st)
		return BPFILTER_VERDICT_DROP;
	lc.st = st;
	if (!init(skb, st, hook))
		return BPFILTER_VERDICT_ACCEPT;
loop:
	bpf_loop(MAX_STEPS, step_cb, &lc, 0);
	return lc.st->verdict;
}

/*
 * A hook whose first entry matches every packet with a verdict (a chain
 * that is just its policy): check the IP header, count, return.
 */
static __always_inline int first(struct __sk_buff *skb, const __u32 hook)
{
	__u8 iph[20] __attribute__((aligned(8)));
	__u32 ihl, tot, e = cfg.hooks[hook].start;
	struct counter *cnt;

	if (!ip_header(skb, iph, &ihl, &tot))
		return BPFILTER_VERDICT_ACCEPT;
	cnt = bpf_map_lookup_elem(&counters, &e);
	if (cnt) {
		cnt->packets++;
		cnt->bytes += tot;
	}
	return cfg.hooks[hook].verdict;
}

#define HOOK_PROGS(name, nr)						\
SEC("tc") int ipt_##name(struct __sk_buff *skb) { return run(skb, nr); }	\
SEC("tc") int first_##name(struct __sk_buff *skb) { return first(skb, nr); }

HOOK_PROGS(prerouting, 0)
HOOK_PROGS(input, 1)
HOOK_PROGS(forward, 2)
HOOK_PROGS(output, 3)
HOOK_PROGS(postrouting, 4)
