/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The usermode helper's ELF image, linked in by Kbuild from the Go binary
 * with objcopy. It lives in .init.rodata: freed once module init is over.
 */
#ifndef _BPFILTER_UMH_BLOB_H
#define _BPFILTER_UMH_BLOB_H

extern const char bpfilter_umh_start[];
extern const char bpfilter_umh_end[];

#endif /* _BPFILTER_UMH_BLOB_H */
