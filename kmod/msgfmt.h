/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The wire between bpfilter.ko and its usermode helper: one request and
 * one reply per sockopt call, over the two pipes of the usermode driver.
 *
 * umh/internal/wire mirrors these structures; its tests compile this
 * header and compare sizes and offsets, so neither side can drift.
 */
#ifndef _BPFILTER_MSGFMT_H
#define _BPFILTER_MSGFMT_H

#include <linux/types.h>

/*
 * Control commands the module sends on its own; a forwarded sockopt call
 * carries its optname (64 and up) as cmd.
 */
#define BPFILTER_CMD_HEALTH	0	/* get: answer 0 if healthy */
#define BPFILTER_CMD_NETNS_EXIT	1	/* set: forget namespace netns */
#define BPFILTER_CMD_SHUTDOWN	2	/* set: the module goes: undo all */
#define BPFILTER_CMD_NETDEV	3	/* set: netns's interfaces changed */

struct mbox_request {
	__u64 addr;	/* caller's optval, in the address space of pid */
	__u32 len;	/* optlen: the umh touches only [addr, addr + len) */
	__u32 is_set;	/* 1 for setsockopt, 0 for getsockopt */
	__u32 cmd;	/* optname, or BPFILTER_CMD_HEALTH */
	__u32 pid;	/* caller's pid in the initial pid namespace */
	__u32 netns;	/* inode number of the socket's network namespace */
	__u32 flags;	/* BPFILTER_REQ_* */
};

/* Request flags. */
#define BPFILTER_REQ_TRACE	0x1	/* log it (bpfilter.trace=1) */

struct mbox_reply {
	__u32 status;	/* 0, or a negative errno (as two's complement) */
};

#endif /* _BPFILTER_MSGFMT_H */
