/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What main.c (the umh and the forwarded calls), hooks.c (namespaces,
 * hooks, the umh's private sockopts), xtname.c (the filter table's name)
 * and xtext.c (kernel extensions, conntrack) share.
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

/* xtext.c: the kernel extensions a set of programs calls out to. */
struct bpfilter_ctx;
struct bpfilter_exts;
struct nf_hook_state;
struct sk_buff;
struct bpfilter_exts *bpfilter_exts_get(struct net *net, const void *recs,
					size_t len, u32 num, bool conntrack);
void bpfilter_exts_put(struct bpfilter_exts *exts);
bool bpfilter_exts_conntrack(const struct bpfilter_exts *exts);
unsigned int bpfilter_exts_run(const struct bpfilter_exts *exts, u32 i,
			       struct sk_buff *skb,
			       const struct nf_hook_state *state, u32 *result);
void bpfilter_fill_ct(struct bpfilter_ctx *ctx, const struct sk_buff *skb);
void bpfilter_xtext_exit(void);

#endif /* _BPFILTER_H */
