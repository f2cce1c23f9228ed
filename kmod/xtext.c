// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel extensions that bpfilter's programs call out to (progctx.h):
 * REJECT, LOG, limit, recent... run by the kernel's own x_tables modules,
 * found, checked, run and destroyed as ip_tables does in
 * find_check_entry(), ipt_do_table() and cleanup_entry(). And conntrack,
 * switched on in a namespace while its programs read it, as xt_conntrack's
 * checkentry and destroy do.
 *
 * x_tables and nf_conntrack are modules that bpfilter does not otherwise
 * need: their symbols are taken (and the modules loaded) on first use, so
 * that insmod works without them.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/err.h>
#include <linux/ip.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netfilter.h>
#include <linux/netfilter/x_tables.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/slab.h>
#include <net/ip.h>
#include <net/net_namespace.h>
#if IS_ENABLED(CONFIG_NF_CONNTRACK)
#include <net/netfilter/nf_conntrack.h>
#endif

#include "bpfilter.h"
#include "msgfmt.h"
#include "progctx.h"

struct bpfilter_xt {
	union {
		struct xt_match *match;
		struct xt_target *target;
	};
	void *data;
	bool is_target;
};

struct bpfilter_exts {
	struct net *net;
	bool conntrack;		/* holds nf_ct_netns_get() */
	u32 num;
	struct bpfilter_xt xt[];
};

struct xtext_syms {
	typeof(xt_request_find_match) *find_match;
	typeof(xt_request_find_target) *find_target;
	typeof(xt_check_match) *check_match;
	typeof(xt_check_target) *check_target;
};

#if IS_ENABLED(CONFIG_NF_CONNTRACK)
struct ct_syms {
	typeof(nf_ct_netns_get) *get;
	typeof(nf_ct_netns_put) *put;
};
#endif

/* Each all set or all NULL, under xtext_lock; dropped at rmmod. */
static DEFINE_MUTEX(xtext_lock);
static struct xtext_syms xsyms;
#if IS_ENABLED(CONFIG_NF_CONNTRACK)
static struct ct_syms csyms;
#endif

static void put_xsyms(void)
{
	lockdep_assert_held(&xtext_lock);
	if (xsyms.find_match)
		symbol_put(xt_request_find_match);
	if (xsyms.find_target)
		symbol_put(xt_request_find_target);
	if (xsyms.check_match)
		symbol_put(xt_check_match);
	if (xsyms.check_target)
		symbol_put(xt_check_target);
	memset(&xsyms, 0, sizeof(xsyms));
}

static int get_xsyms(void)
{
	int err = 0;

	mutex_lock(&xtext_lock);
	if (xsyms.find_match)
		goto out;
	xsyms.find_match = symbol_request(xt_request_find_match);
	xsyms.find_target = symbol_get(xt_request_find_target);
	xsyms.check_match = symbol_get(xt_check_match);
	xsyms.check_target = symbol_get(xt_check_target);
	if (!xsyms.find_match || !xsyms.find_target || !xsyms.check_match ||
	    !xsyms.check_target) {
		put_xsyms();
		pr_err_once("x_tables is not available: no rule can use a kernel extension\n");
		err = -ENOENT;
	}
out:
	mutex_unlock(&xtext_lock);
	return err;
}

#if IS_ENABLED(CONFIG_NF_CONNTRACK)
static void put_csyms(void)
{
	lockdep_assert_held(&xtext_lock);
	if (csyms.get)
		symbol_put(nf_ct_netns_get);
	if (csyms.put)
		symbol_put(nf_ct_netns_put);
	memset(&csyms, 0, sizeof(csyms));
}

static int ct_get(struct net *net)
{
	int err = 0;

	mutex_lock(&xtext_lock);
	if (!csyms.get) {
		csyms.get = symbol_request(nf_ct_netns_get);
		csyms.put = symbol_get(nf_ct_netns_put);
		if (!csyms.get || !csyms.put) {
			put_csyms();
			pr_err_once("nf_conntrack is not available: no rule can match conntrack state\n");
			err = -ENOENT;
		}
	}
	mutex_unlock(&xtext_lock);
	if (err)
		return err;
	/* Taken until rmmod, so no lock is needed to use them. */
	return csyms.get(net, NFPROTO_IPV4);
}

static void ct_put(struct net *net)
{
	csyms.put(net, NFPROTO_IPV4);
}

/* The ct_* fields of ctx, as xt_conntrack and xt_state read the skb. */
void bpfilter_fill_ct(struct bpfilter_ctx *ctx, const struct sk_buff *skb)
{
	const struct nf_conntrack_tuple *o, *r;
	enum ip_conntrack_info ctinfo;
	const struct nf_conn *ct;

	ct = nf_ct_get(skb, &ctinfo);
	ctx->flags |= BPFILTER_CTX_CT;
	ctx->ct_info = ctinfo;
	if (!ct) {
		ctx->ct_present = 0;
		return;
	}
	o = &ct->tuplehash[IP_CT_DIR_ORIGINAL].tuple;
	r = &ct->tuplehash[IP_CT_DIR_REPLY].tuple;
	ctx->ct_present = 1;
	ctx->ct_status = READ_ONCE(ct->status);
	ctx->ct_dir = CTINFO2DIR(ctinfo);
	ctx->ct_proto = o->dst.protonum;
	ctx->ct_expires = nf_ct_expires(ct) / HZ;
	ctx->ct_orig_src = o->src.u3.ip;
	ctx->ct_orig_dst = o->dst.u3.ip;
	ctx->ct_repl_src = r->src.u3.ip;
	ctx->ct_repl_dst = r->dst.u3.ip;
	ctx->ct_orig_sport = o->src.u.all;
	ctx->ct_orig_dport = o->dst.u.all;
	ctx->ct_repl_sport = r->src.u.all;
	ctx->ct_repl_dport = r->dst.u.all;
}
#else
static int ct_get(struct net *net)
{
	pr_err_once("this kernel has no conntrack: no rule can match conntrack state\n");
	return -EOPNOTSUPP;
}

static void ct_put(struct net *net)
{
}

void bpfilter_fill_ct(struct bpfilter_ctx *ctx, const struct sk_buff *skb)
{
}
#endif

static void destroy_one(struct net *net, struct bpfilter_xt *x)
{
	if (x->is_target) {
		struct xt_tgdtor_param par = {
			.net = net, .target = x->target, .targinfo = x->data,
			.family = NFPROTO_IPV4,
		};

		if (par.target->destroy)
			par.target->destroy(&par);
		module_put(par.target->me);
	} else {
		struct xt_mtdtor_param par = {
			.net = net, .match = x->match, .matchinfo = x->data,
			.family = NFPROTO_IPV4,
		};

		if (par.match->destroy)
			par.match->destroy(&par);
		module_put(par.match->me);
	}
	kvfree(x->data);
}

/* find_check_match() or find_check_target() of one record. */
static int check_one(struct net *net, const struct bpfilter_ext *rec,
		     struct bpfilter_xt *x)
{
	struct ipt_entry e = { .ip = rec->ip, .comefrom = rec->hook_mask };
	bool inv = rec->ip.invflags & IPT_INV_PROTO;
	int err;

	x->is_target = rec->flags & BPFILTER_EXT_TARGET;
	x->data = kvmalloc(rec->data_size, GFP_KERNEL_ACCOUNT);
	if (!x->data)
		return -ENOMEM;
	memcpy(x->data, rec + 1, rec->data_size);
	if (x->is_target) {
		struct xt_tgchk_param par = {
			.net = net, .table = "filter", .entryinfo = &e,
			.targinfo = x->data, .hook_mask = rec->hook_mask,
			.family = NFPROTO_IPV4,
		};

		x->target = xsyms.find_target(NFPROTO_IPV4, rec->name,
					      rec->revision);
		if (IS_ERR(x->target)) {
			err = PTR_ERR(x->target);
			goto fail;
		}
		par.target = x->target;
		err = xsyms.check_target(&par, rec->data_size, rec->ip.proto,
					 inv);
		if (err)
			module_put(x->target->me);
	} else {
		struct xt_mtchk_param par = {
			.net = net, .table = "filter", .entryinfo = &e.ip,
			.matchinfo = x->data, .hook_mask = rec->hook_mask,
			.family = NFPROTO_IPV4,
		};

		x->match = xsyms.find_match(NFPROTO_IPV4, rec->name,
					    rec->revision);
		if (IS_ERR(x->match)) {
			err = PTR_ERR(x->match);
			goto fail;
		}
		par.match = x->match;
		err = xsyms.check_match(&par, rec->data_size, rec->ip.proto,
					inv);
		if (err)
			module_put(x->match->me);
	}
	if (!err)
		return 0;
fail:
	kvfree(x->data);
	return err;
}

/* A record as msgfmt.h has it, within len bytes: its size, or 0. */
static size_t ext_size(const struct bpfilter_ext *rec, size_t len)
{
	size_t size;

	if (len < sizeof(*rec))
		return 0;
	size = rec->ext_size;
	if (size > len || size % 8 || rec->data_size > size - sizeof(*rec) ||
	    ALIGN(sizeof(*rec) + rec->data_size, 8) != size ||
	    rec->flags & ~BPFILTER_EXT_TARGET || rec->pad[0] || rec->pad[1] ||
	    rec->pad2[0] || rec->pad2[1] || rec->pad2[2] || rec->pad2[3] ||
	    strnlen(rec->name, XT_EXTENSION_MAXNAMELEN) >=
	    XT_EXTENSION_MAXNAMELEN)
		return 0;
	return size;
}

void bpfilter_exts_put(struct bpfilter_exts *exts)
{
	u32 i;

	if (!exts)
		return;
	for (i = exts->num; i-- > 0;)
		destroy_one(exts->net, &exts->xt[i]);
	if (exts->conntrack)
		ct_put(exts->net);
	kfree(exts);
}

/*
 * The extensions of a set of programs for net: num records in the len
 * bytes at recs, each checked in order as ip_tables checks a table's; and
 * conntrack if asked. On failure nothing is held.
 */
struct bpfilter_exts *bpfilter_exts_get(struct net *net, const void *recs,
					size_t len, u32 num, bool conntrack)
{
	struct bpfilter_exts *exts;
	size_t size;
	int err = 0;

	if (num > len / sizeof(struct bpfilter_ext))
		return ERR_PTR(-EINVAL);
	exts = kzalloc(struct_size(exts, xt, num), GFP_KERNEL_ACCOUNT);
	if (!exts)
		return ERR_PTR(-ENOMEM);
	exts->net = net;
	if (num) {
		err = get_xsyms();
		if (err)
			goto fail;
	}
	for (; exts->num < num; exts->num++) {
		size = ext_size(recs, len);
		if (!size) {
			err = -EINVAL;
			goto fail;
		}
		err = check_one(net, recs, &exts->xt[exts->num]);
		if (err)
			goto fail;
		recs += size;
		len -= size;
	}
	if (len) {
		err = -EINVAL;
		goto fail;
	}
	if (conntrack) {
		err = ct_get(net);
		if (err)
			goto fail;
		exts->conntrack = true;
	}
	return exts;
fail:
	bpfilter_exts_put(exts);
	return ERR_PTR(err);
}

bool bpfilter_exts_conntrack(const struct bpfilter_exts *exts)
{
	return exts->conntrack;
}

/*
 * Runs extension i for a packet, as ipt_do_table() runs a match or a
 * target: *result is the match's outcome (1 after a target that
 * continues). Returns XT_CONTINUE to go on with the program, else the
 * packet's verdict.
 */
unsigned int bpfilter_exts_run(const struct bpfilter_exts *exts, u32 i,
			       struct sk_buff *skb,
			       const struct nf_hook_state *state, u32 *result)
{
	struct xt_action_param par = { .state = state };
	const struct bpfilter_xt *x;

	if (i >= exts->num) {
		pr_warn_once("a program called out to extension %u of %u: dropped\n",
			     i, exts->num);
		return NF_DROP;
	}
	x = &exts->xt[i];
	par.fragoff = ntohs(ip_hdr(skb)->frag_off) & IP_OFFSET;
	par.thoff = ip_hdrlen(skb);
	if (x->is_target) {
		unsigned int verdict;

		par.target = x->target;
		par.targinfo = x->data;
		verdict = x->target->target(skb, &par);
		*result = 1;
		return verdict;
	}
	par.match = x->match;
	par.matchinfo = x->data;
	*result = x->match->match(skb, &par);
	return par.hotdrop ? NF_DROP : XT_CONTINUE;
}

/* At rmmod, after every set is gone. */
void bpfilter_xtext_exit(void)
{
	mutex_lock(&xtext_lock);
	put_xsyms();
#if IS_ENABLED(CONFIG_NF_CONNTRACK)
	put_csyms();
#endif
	mutex_unlock(&xtext_lock);
}
