// SPDX-License-Identifier: GPL-2.0
/*
 * The filter table's name in /proc/net/ip_tables_names.
 *
 * iptables-legacy-save without -t (what netfilter-persistent runs) lists
 * the tables named there, and ip_tables names a table there once it is
 * used in a namespace. bpfilter serves "filter" itself, so ip_tables never
 * makes it: the module registers an empty x_tables table of that name,
 * without hooks, in each namespace whose filter table the umh has served.
 * It also keeps iptable_filter from making a second filter table there.
 *
 * x_tables is a module that bpfilter does not otherwise need: its symbols
 * are taken (and the module loaded) on first use, so that insmod works
 * without it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/err.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter/x_tables.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>

#include "bpfilter.h"

#define FILTER_VALID_HOOKS ((1 << NF_INET_LOCAL_IN) | \
			    (1 << NF_INET_FORWARD) | \
			    (1 << NF_INET_LOCAL_OUT))

static const struct xt_table filter_name = {
	.name		= "filter",
	.valid_hooks	= FILTER_VALID_HOOKS,
	.me		= THIS_MODULE,
	.af		= NFPROTO_IPV4,
	.priority	= NF_IP_PRI_FILTER,
};

/*
 * symbol_get() only finds GPL exports: the table info, which has no
 * entries, is allocated here as xt_alloc_table_info() would, and freed
 * by free_info() as xt_free_table_info() would.
 */
struct xt_syms {
	typeof(xt_register_table) *register_table;
	typeof(xt_unregister_table) *unregister_table;
};

static DEFINE_MUTEX(xtname_lock);
static struct xt_syms syms;	/* all set or all NULL, under xtname_lock */
static unsigned int xtname_net_id;

/* The table this module registered in a namespace, or NULL. */
static struct xt_table **net_table(struct net *net)
{
	return net_generic(net, xtname_net_id);
}

/*
 * As xt_free_table_info(): xt_replace_table() gave the info a jump stack
 * (an array of per-CPU stacks, none allocated for a stack size of 0).
 */
static void free_info(struct xt_table_info *info)
{
	int cpu;

	if (info->jumpstack) {
		for_each_possible_cpu(cpu)
			kvfree(info->jumpstack[cpu]);
		kvfree(info->jumpstack);
	}
	kvfree(info);
}

static void put_syms(void)
{
	lockdep_assert_held(&xtname_lock);
	if (syms.register_table)
		symbol_put(xt_register_table);
	if (syms.unregister_table)
		symbol_put(xt_unregister_table);
	memset(&syms, 0, sizeof(syms));
}

static int get_syms(void)
{
	lockdep_assert_held(&xtname_lock);
	if (syms.register_table)
		return 0;
	syms.register_table = symbol_request(xt_register_table);
	syms.unregister_table = symbol_get(xt_unregister_table);
	if (syms.register_table && syms.unregister_table)
		return 0;
	put_syms();
	return -ENOENT;
}

void bpfilter_xtname_add(struct net *net)
{
	static struct xt_table_info bootstrap;	/* no entries */
	struct xt_table **t = net_table(net);
	struct xt_table_info *info;
	struct xt_table *table;
	int err;

	mutex_lock(&xtname_lock);
	if (*t)
		goto out;
	err = get_syms();
	if (err) {
		pr_err_once("x_tables is not available: iptables-save without -t will not list the filter table\n");
		goto out;
	}
	info = kvzalloc(sizeof(*info), GFP_KERNEL_ACCOUNT);
	if (!info)
		goto out;
	table = syms.register_table(net, &filter_name, &bootstrap, info);
	if (IS_ERR(table)) {
		free_info(info);
		/* -EEXIST: ip_tables has its own filter table there. */
		if (PTR_ERR(table) != -EEXIST)
			pr_err("cannot name the filter table in /proc/net/ip_tables_names: %ld\n",
			       PTR_ERR(table));
		goto out;
	}
	*t = table;
out:
	mutex_unlock(&xtname_lock);
}

static void drop_table(struct net *net)
{
	struct xt_table **t = net_table(net);

	lockdep_assert_held(&xtname_lock);
	if (!*t)
		return;
	free_info(syms.unregister_table(*t));
	*t = NULL;
}

static void __net_exit xtname_net_exit(struct net *net)
{
	mutex_lock(&xtname_lock);
	drop_table(net);
	mutex_unlock(&xtname_lock);
}

static struct pernet_operations xtname_net_ops = {
	.exit	= xtname_net_exit,
	.id	= &xtname_net_id,
	.size	= sizeof(struct xt_table *),
};

int bpfilter_xtname_init(void)
{
	return register_pernet_subsys(&xtname_net_ops);
}

/* At rmmod: the names go with the module (the exits unregister them). */
void bpfilter_xtname_exit(void)
{
	unregister_pernet_subsys(&xtname_net_ops);
	mutex_lock(&xtname_lock);
	put_syms();
	mutex_unlock(&xtname_lock);
}
