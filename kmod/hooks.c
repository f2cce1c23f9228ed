// SPDX-License-Identifier: GPL-2.0
/*
 * bpfilter's netfilter hooks: per network namespace, the umh's programs run
 * at NF_INET_LOCAL_IN, NF_INET_FORWARD and NF_INET_LOCAL_OUT, priority
 * NF_IP_PRI_FILTER, where iptable_filter runs (progctx.h). The umh hands
 * the programs over through private sockopts (msgfmt.h, BPFILTER_SO_*);
 * the module holds them, so they outlive the umh, and drops them when the
 * namespace goes or the module is removed, without asking the umh.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/delay.h>
#include <linux/filter.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>

#include "compat.h"
#include "bpfilter.h"
#include "msgfmt.h"
#include "progctx.h"

/* What a namespace runs: a SET_PROGS, swapped as a whole under RCU. */
struct bpfilter_held_progs {
	struct bpf_prog *prog[BPFILTER_NUM_HOOKS];
	bool reads_ctx[BPFILTER_NUM_HOOKS];	/* ctx is in its used maps */
	bool fill_ctx;			/* ... and they read it (msgfmt.h) */
	bool fill_names;		/* ... its in and out names too */
	struct bpf_map *ctx;
	struct bpfilter_exts *exts;	/* what the programs call out to */
	u64 gen;
	struct rcu_head rcu;
};

struct bpfilter_net {
	struct bpfilter_held_progs __rcu *held;
	struct nf_hook_ops ops[BPFILTER_NUM_HOOKS];
	struct list_head list;		/* in bpfilter_nets, until pre_exit */
	struct net *net;
	u64 cookie;
	bool hooked;
	bool known;			/* the umh may have state for it */
};

static unsigned int bpfilter_net_id __read_mostly;

/*
 * Guards bpfilter_nets and every namespace's hooks and programs. Never
 * bpfilter_ops.lock: a forwarded call holds that while the umh, whose
 * private sockopts take this one, works on it.
 */
static DEFINE_MUTEX(bpfilter_net_lock);
static LIST_HEAD(bpfilter_nets);

/* Namespaces gone that the umh has not been told of yet. */
static LIST_HEAD(bpfilter_exits);
static DEFINE_SPINLOCK(bpfilter_exits_lock);

static const unsigned int bpfilter_hooknum[BPFILTER_NUM_HOOKS] = {
	[BPFILTER_HOOK_INPUT]	= NF_INET_LOCAL_IN,
	[BPFILTER_HOOK_FORWARD]	= NF_INET_FORWARD,
	[BPFILTER_HOOK_OUTPUT]	= NF_INET_LOCAL_OUT,
};

static void fill_dev(const struct net_device *dev, u32 *ifindex, char *name)
{
	if (dev) {
		*ifindex = dev->ifindex;
		memcpy(name, dev->name, BPFILTER_IFNAMSIZ);
	} else {
		*ifindex = 0;
		memset(name, 0, BPFILTER_IFNAMSIZ);
	}
}

/* Counts program runs per CPU: a callout that ran the hook again shows. */
static DEFINE_PER_CPU(unsigned int, bpfilter_runs);

/*
 * Runs the program, and the extensions it calls out to, for one packet
 * (progctx.h). BHs are off; the ctx, if any, is filled.
 */
static unsigned int run_prog(const struct bpfilter_held_progs *held,
			     struct bpf_prog *prog, struct bpfilter_ctx *ctx,
			     struct sk_buff *skb,
			     const struct nf_hook_state *state)
{
	char cb[sizeof(skb->cb)];
	unsigned int runs, ret;
	u32 result;
	int n;

	/* IPCB lives in skb->cb; the program's data_end goes there too. */
	memcpy(cb, skb->cb, sizeof(cb));
	for (n = 0;; n++) {
		runs = this_cpu_inc_return(bpfilter_runs);
		bpf_compute_data_pointers(skb);
		ret = bpfilter_prog_run(prog, skb);
		memcpy(skb->cb, cb, sizeof(cb));
		if (ret != BPFILTER_VERDICT_CALLOUT)
			return ret;
		if (!ctx || n == BPFILTER_MAX_CALLOUTS) {
			pr_warn_once("a program called out %s: dropped\n",
				     ctx ? "too often" : "without a ctx");
			return NF_DROP;
		}
		ret = bpfilter_exts_run(held->exts, ctx->callout, skb, state,
					&result);
		if (ret != XT_CONTINUE)
			return ret;
		/* The extension ran the hook again (a packet it sent). */
		if (this_cpu_read(bpfilter_runs) != runs) {
			pr_warn_once("a callout re-entered the hook: dropped\n");
			return NF_DROP;
		}
		ctx->result = result;
		ctx->flags |= BPFILTER_CTX_RESUME;
	}
}

static unsigned int bpfilter_hook(void *priv, struct sk_buff *skb,
				  const struct nf_hook_state *state)
{
	struct bpfilter_net *bn = priv;
	struct bpfilter_held_progs *held;
	struct bpfilter_ctx *ctx;
	struct bpf_prog *prog;
	u32 zero = 0, ret;
	int i;

	/* nf_hook() runs us inside rcu_read_lock(). */
	held = rcu_dereference(bn->held);
	if (!held)
		return NF_ACCEPT;
	/* NF_INET_LOCAL_IN, _FORWARD, _LOCAL_OUT: 1, 2, 3 (checked at init) */
	i = state->hook - NF_INET_LOCAL_IN;
	prog = held->prog[i];

	/* As ipt_do_table: per-CPU state (ctx, counters) with BHs off. */
	local_bh_disable();
	ctx = held->reads_ctx[i] && held->fill_ctx ?
	      held->ctx->ops->map_lookup_elem(held->ctx, &zero) : NULL;
	if (ctx) {
		ctx->hook = state->hook;
		ctx->flags = 0;
		if (held->fill_names) {
			fill_dev(state->in, &ctx->in_ifindex, ctx->in);
			fill_dev(state->out, &ctx->out_ifindex, ctx->out);
		}
		if (bpfilter_exts_conntrack(held->exts))
			bpfilter_fill_ct(ctx, skb);
	}
	ret = run_prog(held, prog, ctx, skb, state);
	local_bh_enable();

	if (ret == NF_DROP || ret == NF_ACCEPT)
		return ret;
	if ((ret & NF_VERDICT_MASK) == NF_QUEUE &&
	    !(ret & ~(NF_VERDICT_QMASK | NF_VERDICT_FLAG_QUEUE_BYPASS |
		      NF_VERDICT_MASK)))
		return ret;
	pr_warn_once("a program returned %#x, not a verdict: dropped\n", ret);
	return NF_DROP;
}

static void put_held(struct bpfilter_held_progs *held)
{
	int i;

	for (i = 0; i < BPFILTER_NUM_HOOKS; i++)
		bpf_prog_put(held->prog[i]);
	bpf_map_put(held->ctx);
	bpfilter_exts_put(held->exts);
	kfree(held);
}

static void unhook(struct bpfilter_net *bn)
{
	lockdep_assert_held(&bpfilter_net_lock);
	if (!bn->hooked)
		return;
	nf_unregister_net_hooks(bn->net, bn->ops, BPFILTER_NUM_HOOKS);
	bn->hooked = false;
}

/*
 * Makes held (NULL: none) the namespace's programs. When it returns, no
 * packet is in the old ones any more. Hooks go with the last programs.
 */
static int swap_held(struct bpfilter_net *bn, struct bpfilter_held_progs *held)
{
	struct bpfilter_held_progs *old;
	int err;

	lockdep_assert_held(&bpfilter_net_lock);
	if (held && !bn->hooked) {
		err = nf_register_net_hooks(bn->net, bn->ops,
					    BPFILTER_NUM_HOOKS);
		if (err)
			return err;
		bn->hooked = true;
		if (bpfilter_tracing())
			pr_info("netns %llu: hooks at LOCAL_IN, FORWARD, LOCAL_OUT, priority %d\n",
				bn->cookie, NF_IP_PRI_FILTER);
	}
	if (!held)
		unhook(bn);
	old = rcu_replace_pointer(bn->held, held,
				  lockdep_is_held(&bpfilter_net_lock));
	if (old) {
		synchronize_rcu();
		put_held(old);
	}
	return 0;
}

/* The number of the namespace of a forwarded call, which the umh now knows. */
u64 bpfilter_net_known(struct net *net)
{
	struct bpfilter_net *bn = net_generic(net, bpfilter_net_id);

	WRITE_ONCE(bn->known, true);
	return bn->cookie;
}

static int __net_init bpfilter_net_init_one(struct net *net)
{
	struct bpfilter_net *bn = net_generic(net, bpfilter_net_id);
	int i;

	bn->net = net;
	bn->cookie = bpfilter_net_cookie(net);
	for (i = 0; i < BPFILTER_NUM_HOOKS; i++) {
		bn->ops[i] = (struct nf_hook_ops) {
			.hook		= bpfilter_hook,
			.pf		= NFPROTO_IPV4,
			.hooknum	= bpfilter_hooknum[i],
			.priority	= NF_IP_PRI_FILTER,
			.priv		= bn,
		};
	}
	mutex_lock(&bpfilter_net_lock);
	list_add_tail(&bn->list, &bpfilter_nets);
	mutex_unlock(&bpfilter_net_lock);
	return 0;
}

/* As iptable_filter: the hooks go before the namespace's devices. */
static void __net_exit bpfilter_net_pre_exit(struct net *net)
{
	struct bpfilter_net *bn = net_generic(net, bpfilter_net_id);

	mutex_lock(&bpfilter_net_lock);
	list_del(&bn->list);	/* SET_PROGS no longer finds it */
	unhook(bn);
	mutex_unlock(&bpfilter_net_lock);
}

/* No umh here: the next forwarded call or umh start tells it. */
static void __net_exit bpfilter_net_exit_one(struct net *net)
{
	struct bpfilter_net *bn = net_generic(net, bpfilter_net_id);
	struct bpfilter_exit *ex;

	mutex_lock(&bpfilter_net_lock);
	swap_held(bn, NULL);
	mutex_unlock(&bpfilter_net_lock);

	if (!READ_ONCE(bn->known))
		return;
	ex = kmalloc(sizeof(*ex), GFP_KERNEL);
	if (!ex) {
		pr_warn("no memory to tell the umh that namespace %llu is gone\n",
			bn->cookie);
		return;
	}
	ex->cookie = bn->cookie;
	spin_lock(&bpfilter_exits_lock);
	list_add_tail(&ex->list, &bpfilter_exits);
	spin_unlock(&bpfilter_exits_lock);
}

static struct pernet_operations bpfilter_net_ops = {
	.init		= bpfilter_net_init_one,
	.pre_exit	= bpfilter_net_pre_exit,
	.exit		= bpfilter_net_exit_one,
	.id		= &bpfilter_net_id,
	.size		= sizeof(struct bpfilter_net),
};

void bpfilter_exits_take(struct list_head *to)
{
	spin_lock(&bpfilter_exits_lock);
	list_splice_tail_init(&bpfilter_exits, to);
	spin_unlock(&bpfilter_exits_lock);
}

/* Not sent after all: they go first next time. */
void bpfilter_exits_return(struct list_head *from)
{
	spin_lock(&bpfilter_exits_lock);
	list_splice_init(from, &bpfilter_exits);
	spin_unlock(&bpfilter_exits_lock);
}

void bpfilter_exits_free(struct list_head *exits)
{
	struct bpfilter_exit *ex, *tmp;

	list_for_each_entry_safe(ex, tmp, exits, list) {
		list_del(&ex->list);
		kfree(ex);
	}
}

/* Only the running umh, in its own context. */
static int check_umh(void)
{
	if (task_tgid(current) != READ_ONCE(bpfilter_ops.info.tgid) ||
	    !capable(CAP_NET_ADMIN))
		return -EPERM;
	return 0;
}

static struct bpfilter_net *find_net(u64 cookie)
{
	struct bpfilter_net *bn;

	lockdep_assert_held(&bpfilter_net_lock);
	list_for_each_entry(bn, &bpfilter_nets, list) {
		if (bn->cookie == cookie)
			return bn;
	}
	return NULL;
}

/* Whether prog reads map: a program that does not is spared the filling. */
static bool uses_map(struct bpf_prog *prog, struct bpf_map *map)
{
	bool used = false;
	u32 i;

	mutex_lock(&prog->aux->used_maps_mutex);
	for (i = 0; i < prog->aux->used_map_cnt; i++)
		used = used || prog->aux->used_maps[i] == map;
	mutex_unlock(&prog->aux->used_maps_mutex);
	return used;
}

/* The programs, map and extensions of p (recs: its len bytes of records). */
static struct bpfilter_held_progs *get_held(const struct bpfilter_progs *p,
					    struct net *net, const void *recs,
					    size_t len)
{
	struct bpfilter_held_progs *held;
	struct bpf_map *map;
	int i, err = -EINVAL;

	if (p->flags & ~(BPFILTER_PROGS_CONNTRACK | BPFILTER_PROGS_IFNAMES))
		return ERR_PTR(-EINVAL);
	held = kzalloc(sizeof(*held), GFP_KERNEL_ACCOUNT);
	if (!held)
		return ERR_PTR(-ENOMEM);
	held->gen = p->gen;
	for (i = 0; i < BPFILTER_NUM_HOOKS; i++) {
		held->prog[i] = bpf_prog_get_type_dev(p->prog_fd[i],
						      BPF_PROG_TYPE_SCHED_CLS,
						      false);
		if (IS_ERR(held->prog[i])) {
			held->prog[i] = NULL;
			goto fail;
		}
	}
	map = bpf_map_get(p->ctx_fd);
	if (IS_ERR(map))
		goto fail;
	held->ctx = map;
	if (map->map_type != BPF_MAP_TYPE_PERCPU_ARRAY ||
	    map->value_size != sizeof(struct bpfilter_ctx) ||
	    map->max_entries < 1)
		goto fail;
	for (i = 0; i < BPFILTER_NUM_HOOKS; i++)
		held->reads_ctx[i] = uses_map(held->prog[i], map);
	held->exts = bpfilter_exts_get(net, recs, len, p->num_ext,
				       p->flags & BPFILTER_PROGS_CONNTRACK);
	if (IS_ERR(held->exts)) {
		err = PTR_ERR(held->exts);
		held->exts = NULL;
		goto fail;
	}
	held->fill_names = p->flags & BPFILTER_PROGS_IFNAMES;
	held->fill_ctx = held->fill_names || p->num_ext ||
			 p->flags & BPFILTER_PROGS_CONNTRACK;
	return held;
fail:
	for (i = 0; i < BPFILTER_NUM_HOOKS; i++) {
		if (held->prog[i])
			bpf_prog_put(held->prog[i]);
	}
	if (held->ctx)
		bpf_map_put(held->ctx);
	kfree(held);
	return ERR_PTR(err);
}

static bool no_fds(const struct bpfilter_progs *p)
{
	int i;

	for (i = 0; i < BPFILTER_NUM_HOOKS; i++) {
		if (p->prog_fd[i] != -1)
			return false;
	}
	return p->ctx_fd == -1 && !p->num_ext && !p->flags;
}

/* The namespace netns, referenced, while it is not on its way out. */
static struct net *get_net_of(u64 netns)
{
	struct bpfilter_net *bn;
	struct net *net = NULL;

	mutex_lock(&bpfilter_net_lock);
	bn = find_net(netns);
	if (bn)
		net = maybe_get_net(bn->net);
	mutex_unlock(&bpfilter_net_lock);
	return net;
}

/* p and the len bytes of extension records after it. */
static int set_progs(const struct bpfilter_progs *p, size_t len)
{
	struct bpfilter_held_progs *held = NULL;
	struct bpfilter_net *bn;
	struct net *net;
	int err;

	/*
	 * Every reference taken and every extension checked (which may load
	 * modules) before anything changes, without the lock.
	 */
	net = get_net_of(p->netns);
	if (!net)
		return -ESRCH;
	if (!no_fds(p)) {
		held = get_held(p, net, p + 1, len - sizeof(*p));
		if (IS_ERR(held)) {
			put_net(net);
			return PTR_ERR(held);
		}
	}

	mutex_lock(&bpfilter_net_lock);
	bn = find_net(p->netns);
	if (!bn) {
		err = -ESRCH;
	} else {
		WRITE_ONCE(bn->known, true);
		err = swap_held(bn, held);
	}
	mutex_unlock(&bpfilter_net_lock);
	if (err && held)
		put_held(held);
	put_net(net);
	return err;
}

static int bpfilter_so_set(struct sock *sk, int optval, sockptr_t arg,
			   unsigned int len)
{
	struct bpfilter_progs *p;
	int err;

	err = check_umh();
	if (err)
		return err;
	if (optval != BPFILTER_SO_SET_PROGS)
		return -ENOPROTOOPT;
	if (len < sizeof(*p) || len > BPFILTER_PROGS_MAX_SIZE)
		return -EINVAL;
	p = kvmalloc(len, GFP_KERNEL_ACCOUNT);
	if (!p)
		return -ENOMEM;
	if (copy_from_sockptr(p, arg, len))
		err = -EFAULT;
	else
		err = set_progs(p, len);
	kvfree(p);
	return err;
}

static int get_held_list(void __user *user, int *len)
{
	struct bpfilter_held __user *to = user;
	struct bpfilter_held_progs *held;
	struct bpfilter_held h;
	struct bpfilter_net *bn;
	size_t need = 0;
	int i, err = 0;

	if (*len < 0)
		return -EINVAL;
	mutex_lock(&bpfilter_net_lock);
	list_for_each_entry(bn, &bpfilter_nets, list) {
		if (rcu_access_pointer(bn->held))
			need += sizeof(h);
	}
	if (need > *len) {
		*len = need;	/* not handed back: see msgfmt.h */
		err = -ENOSPC;
		goto out;
	}
	list_for_each_entry(bn, &bpfilter_nets, list) {
		held = rcu_dereference_protected(bn->held,
						 lockdep_is_held(&bpfilter_net_lock));
		if (!held)
			continue;
		memset(&h, 0, sizeof(h));
		h.netns = bn->cookie;
		h.gen = held->gen;
		for (i = 0; i < BPFILTER_NUM_HOOKS; i++)
			h.prog_id[i] = held->prog[i]->aux->id;
		h.ctx_id = held->ctx->id;
		if (copy_to_user(to++, &h, sizeof(h))) {
			err = -EFAULT;
			goto out;
		}
	}
	*len = need;
out:
	mutex_unlock(&bpfilter_net_lock);
	return err;
}

static int bpfilter_so_get(struct sock *sk, int optval, void __user *user,
			   int *len)
{
	int err;

	err = check_umh();
	if (err)
		return err;
	if (optval != BPFILTER_SO_GET_HELD)
		return -ENOPROTOOPT;
	return get_held_list(user, len);
}

static struct nf_sockopt_ops bpfilter_sockopts = {
	.pf		= PF_INET,
	.set_optmin	= BPFILTER_SO_BASE,
	.set_optmax	= BPFILTER_SO_SET_MAX,
	.set		= bpfilter_so_set,
	.get_optmin	= BPFILTER_SO_BASE,
	.get_optmax	= BPFILTER_SO_GET_MAX,
	.get		= bpfilter_so_get,
	.owner		= THIS_MODULE,
};

/* Before the umh starts: it may ask what is held at once. */
int bpfilter_net_init(void)
{
	int err;

	BUILD_BUG_ON(NF_INET_FORWARD - NF_INET_LOCAL_IN != BPFILTER_HOOK_FORWARD);
	BUILD_BUG_ON(NF_INET_LOCAL_OUT - NF_INET_LOCAL_IN != BPFILTER_HOOK_OUTPUT);
	BUILD_BUG_ON(BPFILTER_IFNAMSIZ != IFNAMSIZ);
	BUILD_BUG_ON(BPFILTER_VERDICT_QUEUE_BYPASS != NF_VERDICT_FLAG_QUEUE_BYPASS);
	BUILD_BUG_ON(BPFILTER_VERDICT_QUEUE_SHIFT != NF_VERDICT_QBITS);

	err = register_pernet_subsys(&bpfilter_net_ops);
	if (err) {
		pr_err("cannot register for namespaces: %d\n", err);
		return err;
	}
	err = nf_register_sockopt(&bpfilter_sockopts);
	if (err) {
		pr_err("cannot register the umh's sockopts: %d\n", err);
		unregister_pernet_subsys(&bpfilter_net_ops);
	}
	return err;
}

/*
 * A failed init returns with no wait for module references: let the
 * private sockopt calls that found us (each holds one, the loader another
 * while init runs) leave first. At rmmod there are none: nothing to wait.
 */
static void drain_sockopts(void)
{
#ifdef CONFIG_MODULE_UNLOAD
	while (module_refcount(THIS_MODULE) > 1)
		msleep(20);
#endif
}

/*
 * First thing on the way out: nothing of bpfilter stays in any namespace,
 * whatever the umh does, and the umh can hand over nothing more.
 */
void bpfilter_net_release(void)
{
	struct bpfilter_net *bn;

	nf_unregister_sockopt(&bpfilter_sockopts);
	drain_sockopts();
	mutex_lock(&bpfilter_net_lock);
	list_for_each_entry(bn, &bpfilter_nets, list)
		swap_held(bn, NULL);
	mutex_unlock(&bpfilter_net_lock);
}

/* After bpfilter_net_release() and with no umh left. */
void bpfilter_net_fini(void)
{
	LIST_HEAD(exits);

	unregister_pernet_subsys(&bpfilter_net_ops);
	bpfilter_exits_take(&exits);
	bpfilter_exits_free(&exits);
}
