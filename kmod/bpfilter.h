/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What main.c (the umh and the forwarded calls), hooks.c (namespaces,
 * hooks, the umh's private sockopts) and xtname.c (the filter table's
 * name) share.
 */
#ifndef _BPFILTER_H
#define _BPFILTER_H

#include <linux/list.h>
#include <linux/types.h>
#include <net/net_namespace.h>

/* A namespace gone, which the umh knew: BPFILTER_CMD_NETNS_EXIT tells it. */
struct bpfilter_exit {
	struct list_head list;
	u64 cookie;
};

/* main.c: bpfilter.trace is on (log the module's steps too). */
bool bpfilter_tracing(void);

int bpfilter_net_init(void);
void bpfilter_net_release(void);
void bpfilter_net_fini(void);

u64 bpfilter_net_known(struct net *net);
void bpfilter_exits_take(struct list_head *to);
void bpfilter_exits_return(struct list_head *from);
void bpfilter_exits_free(struct list_head *exits);

/* xtname.c: the filter table's name in /proc/net/ip_tables_names. */
int bpfilter_xtname_init(void);
void bpfilter_xtname_exit(void);
void bpfilter_xtname_add(struct net *net);

#endif /* _BPFILTER_H */
