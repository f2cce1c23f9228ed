/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What bpfilter's programs see and return at netfilter's hooks.
 *
 * The module runs the program of a hook on every IPv4 packet at
 * NF_INET_LOCAL_IN, NF_INET_FORWARD and NF_INET_LOCAL_OUT, priority
 * NF_IP_PRI_FILTER: where iptable_filter runs. The program is a
 * BPF_PROG_TYPE_SCHED_CLS program: its context is the skb (__sk_buff),
 * whose data starts at the IPv4 header. It must not write __sk_buff.cb[]
 * (the module restores skb->cb after the run anyway: IPCB lives there).
 *
 * What the hook adds is in struct bpfilter_ctx, the single value (key 0)
 * of a per-CPU array that the module fills before each run with bottom
 * halves disabled, so that nothing else runs the program on that CPU
 * meanwhile.
 *
 * umh/internal/codegen mirrors this; a test compiles this header.
 */
#ifndef _BPFILTER_PROGCTX_H
#define _BPFILTER_PROGCTX_H

#include <linux/types.h>

#define BPFILTER_IFNAMSIZ	16	/* IFNAMSIZ */

struct bpfilter_ctx {
	__u32 hook;		/* NF_INET_LOCAL_IN (1), _FORWARD (2), _LOCAL_OUT (3) */
	__u32 in_ifindex;	/* 0: no input interface (OUTPUT) */
	__u32 out_ifindex;	/* 0: no output interface (INPUT) */
	__u32 pad;		/* 0 */
	/* The interfaces' names as ip_tables compares them: all IFNAMSIZ
	 * bytes of net_device.name, or all zero for none (nulldevname).
	 */
	char in[BPFILTER_IFNAMSIZ];
	char out[BPFILTER_IFNAMSIZ];
};

/*
 * The program returns a netfilter verdict, as an ip_tables target would:
 * NF_DROP (0), NF_ACCEPT (1), or NF_QUEUE (3) with the queue number in the
 * upper 16 bits and BPFILTER_VERDICT_QUEUE_BYPASS (NF_VERDICT_FLAG_QUEUE_BYPASS)
 * for --queue-bypass. Anything else is dropped, and logged once.
 */
#define BPFILTER_VERDICT_DROP		0
#define BPFILTER_VERDICT_ACCEPT		1
#define BPFILTER_VERDICT_QUEUE		3
#define BPFILTER_VERDICT_QUEUE_BYPASS	0x8000
#define BPFILTER_VERDICT_QUEUE_SHIFT	16

#endif /* _BPFILTER_PROGCTX_H */
