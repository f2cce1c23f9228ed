/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel-version differences, all in one place. main.c is written against
 * the newest API (5.9..6.7: struct umd_info, umd_load_blob(),
 * fork_usermode_driver(), sockptr_t); older kernels are mapped onto it
 * here. Kbuild refuses trees without the bpfilter hooks before we get here.
 */
#ifndef _BPFILTER_COMPAT_H
#define _BPFILTER_COMPAT_H

#include <linux/version.h>
#include <linux/kconfig.h>

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
/* commit 98e20e5e13d2 removed the hooks */
#error "bpfilter: Linux 6.8+ has no bpfilter sockopt hooks; use 4.18..6.7"
#endif
#if LINUX_VERSION_CODE < KERNEL_VERSION(4, 18, 0)
#error "bpfilter: Linux before 4.18 has no bpfilter sockopt hooks"
#endif
#if !IS_ENABLED(CONFIG_BPFILTER_UMH)
#error "bpfilter: the hooks need CONFIG_BPFILTER_UMH=m (kconfig/bpfilter.config)"
#endif

#include <linux/bpfilter.h>

#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 9, 0)
#include <linux/usermode_driver.h>
#include <linux/sockptr.h>
#endif

#include <linux/filter.h>
#include <net/net_namespace.h>

/* bpf_prog_run() replaced the BPF_PROG_RUN() macro in 5.15. */
#ifdef BPF_PROG_RUN
#define bpfilter_prog_run(prog, ctx)	BPF_PROG_RUN(prog, ctx)
#else
#define bpfilter_prog_run(prog, ctx)	bpf_prog_run(prog, ctx)
#endif

/*
 * A number for a namespace, never reused. Since 5.12 (commit 3d368ab87cf6)
 * net_cookie is set when the namespace is made. Before, the kernel made it
 * on demand in a function it does not export: the module numbers the
 * namespaces it meets itself (pernet init, once each), as uniquely.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 12, 0)
static inline u64 bpfilter_net_cookie(struct net *net)
{
	return net->net_cookie;
}
#else
static inline u64 bpfilter_net_cookie(struct net *net)
{
	static atomic64_t last;

	return atomic64_inc_return(&last);
}
#endif

#endif /* _BPFILTER_COMPAT_H */
