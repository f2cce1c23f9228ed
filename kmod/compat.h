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

#endif /* _BPFILTER_COMPAT_H */
