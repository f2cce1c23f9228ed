// SPDX-License-Identifier: GPL-2.0
/*
 * The filter table's name in /proc/net/ip_tables_names.
 *
 * iptables-legacy-save without -t (what netfilter-persistent runs) lists
 * the tables named there, and ip_tables names a table there once it is
 * used in a namespace. bpfilter serves "filter" itself, so ip_tables never
 * makes it: the module registers an empty x_tables table of that name,
 * without hooks (valid_hooks 0) or entries, in each namespace whose filter
 * table the umh has served.
 *
 * x_tables is a module that bpfilter does not otherwise need: its symbols
 * are taken (and the module loaded) on first use, so that insmod works
 * without it. The pernet operations that drop the names are registered
 * then too, after x_tables' own, so that a name goes before x_tables
 * checks that a dying namespace has no table left.
 *
 * iptable_filter unregisters the table called "filter", whoever made it,
 * at a namespace's exit and at its own rmmod (6.1 looks the name up). So:
 * - a name goes in the namespace's pre_exit, before any exit method runs
 *   (iptable_filter's pre_exit, if it runs first, unregisters the hooks
 *   of a table that has none);
 * - while iptable_filter is loaded, there are no names: they go when it
 *   comes (a module notifier) and come back with the next served call
 *   after it went. If it was loaded before bpfilter, its rmmod frees the
 *   names itself, and they are forgotten when it has gone.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/err.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter/x_tables.h>
#include <linux/notifier.h>
#include <linux/slab.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>

#include "bpfilter.h"

static const struct xt_table filter_name = {
	.name		= "filter",
	.valid_hooks	= 0,	/* no hooks: see above */
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

/* A name this module registered. */
struct xtname {
	struct list_head list;		/* in xtnames */
	struct net *net;
	struct xt_table *table;
};

static DEFINE_MUTEX(xtname_lock);
static struct xt_syms syms;	/* all set or all NULL, under xtname_lock */
static LIST_HEAD(xtnames);	/* under xtname_lock */
static bool filter_loaded;	/* iptable_filter is, under xtname_lock */
static unsigned int xtname_net_id;

/*
 * Guards registering xtname_net_ops. Not xtname_lock: the pre_exits run
 * under pernet_ops_rwsem and take xtname_lock, so xtname_lock must never
 * be held while the ops are registered or unregistered.
 */
static DEFINE_MUTEX(xtname_reg_lock);
static bool registered;		/* under xtname_reg_lock */
static struct pernet_operations xtname_net_ops;

/* The name this module registered in a namespace, or NULL. */
static struct xtname **net_name(struct net *net)
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

/* x_tables' symbols, then the pre_exits that drop the names. */
static int get_ready(void)
{
	int err = 0;

	mutex_lock(&xtname_reg_lock);
	if (!registered) {
		mutex_lock(&xtname_lock);
		err = get_syms();
		mutex_unlock(&xtname_lock);
		if (!err)
			err = register_pernet_subsys(&xtname_net_ops);
		registered = !err;
	}
	mutex_unlock(&xtname_reg_lock);
	return err;
}

/* Drops a name; with unregister false, only forgets it (freed already). */
static void drop_name(struct xtname *n, bool unregister)
{
	lockdep_assert_held(&xtname_lock);
	if (unregister)
		free_info(syms.unregister_table(n->table));
	*net_name(n->net) = NULL;
	list_del(&n->list);
	kfree(n);
}

void bpfilter_xtname_add(struct net *net)
{
	static struct xt_table_info bootstrap;	/* no entries */
	struct xt_table_info *info;
	struct xt_table *table;
	struct xtname *n;

	if (get_ready()) {
		pr_err_once("x_tables is not available: iptables-save without -t will not list the filter table\n");
		return;
	}
	mutex_lock(&xtname_lock);
	if (*net_name(net) || filter_loaded)
		goto out;
	n = kzalloc(sizeof(*n), GFP_KERNEL_ACCOUNT);
	info = kvzalloc(sizeof(*info), GFP_KERNEL_ACCOUNT);
	if (!n || !info) {
		kfree(n);
		kvfree(info);
		goto out;
	}
	table = syms.register_table(net, &filter_name, &bootstrap, info);
	if (IS_ERR(table)) {
		free_info(info);
		kfree(n);
		/* -EEXIST: ip_tables has its own filter table there. */
		if (PTR_ERR(table) != -EEXIST)
			pr_err("cannot name the filter table in /proc/net/ip_tables_names: %ld\n",
			       PTR_ERR(table));
		goto out;
	}
	n->net = net;
	n->table = table;
	list_add(&n->list, &xtnames);
	*net_name(net) = n;
out:
	mutex_unlock(&xtname_lock);
}

static void __net_exit xtname_net_pre_exit(struct net *net)
{
	mutex_lock(&xtname_lock);
	if (*net_name(net))
		drop_name(*net_name(net), true);
	mutex_unlock(&xtname_lock);
}

static struct pernet_operations xtname_net_ops = {
	.pre_exit	= xtname_net_pre_exit,
	.id		= &xtname_net_id,
	.size		= sizeof(struct xtname *),
};

static int xtname_module_event(struct notifier_block *nb, unsigned long val,
			       void *data)
{
	struct module *mod = data;
	struct xtname *n, *tmp;

	if (strcmp(mod->name, "iptable_filter"))
		return NOTIFY_DONE;
	mutex_lock(&xtname_lock);
	switch (val) {
	case MODULE_STATE_COMING:
		/* Before its init: no name of ours for it to find. */
		filter_loaded = true;
		list_for_each_entry_safe(n, tmp, &xtnames, list)
			drop_name(n, true);
		break;
	case MODULE_STATE_GOING:
		/*
		 * After its exit (or a failed init). If it was there before
		 * bpfilter, its exit freed whatever names there were.
		 */
		filter_loaded = false;
		list_for_each_entry_safe(n, tmp, &xtnames, list)
			drop_name(n, false);
		break;
	}
	mutex_unlock(&xtname_lock);
	return NOTIFY_OK;
}

static struct notifier_block xtname_module_nb = {
	.notifier_call = xtname_module_event,
};

int bpfilter_xtname_init(void)
{
	return register_module_notifier(&xtname_module_nb);
}

/* At rmmod: the names go with the module (the pre_exits drop them). */
void bpfilter_xtname_exit(void)
{
	mutex_lock(&xtname_reg_lock);
	if (registered)
		unregister_pernet_subsys(&xtname_net_ops);
	registered = false;
	mutex_unlock(&xtname_reg_lock);
	unregister_module_notifier(&xtname_module_nb);
	mutex_lock(&xtname_lock);
	put_syms();
	mutex_unlock(&xtname_lock);
}
