// Package datapath compiles an iptables table (package ipt) into the maps
// of a BPF program written in restricted C (bpf/datapath.c, with every
// layout shared with Go in bpf/layout.h), compiled at build time by
// cilium/ebpf's bpf2go with Debian's clang: make builds the object (a
// build output) and the Go types (committed); TestGenerated checks that
// both are what the sources give.
//
// # Programs
//
// The object has, per netfilter hook, a general program (ipt_<hook>) and a
// straight-line one (first_<hook>); Compile keeps one per hook of the
// table, named ProgramName. The module (kmod/progctx.h) runs them at
// NF_INET_LOCAL_IN, NF_INET_FORWARD and NF_INET_LOCAL_OUT, priority
// NF_IP_PRI_FILTER, as BPF_PROG_TYPE_SCHED_CLS programs whose skb starts
// at the IPv4 header (read with bpf_skb_load_bytes_relative from the
// network header, which BPF_PROG_TEST_RUN serves as well). They return a
// netfilter verdict (NF_ACCEPT, NF_DROP, NF_QUEUE with QueueVerdict) or
// NFCallout. A packet whose header the IP layer would refuse is let
// through uncounted. The table's numbers (entries, records, groups, the
// jump limit, which features it uses, each hook's first entry, underflow
// and interfaces) are the .rodata variable cfg (struct config): the
// verifier sees them as constants and prunes what a table does not use.
// A hook whose first entry matches every packet with a verdict (a chain
// that is just its policy) gets the straight-line program: check the IP
// header, count, return.
//
// # Maps
//
// rules: one struct record per entry (ipt_ip part and first match) plus
// continuation records for further matches, in match order. segs, groups,
// classes, lists: the classification. counters: per-CPU struct counter
// (xt_counters). ctx: struct bpfilter_ctx, filled by the module (MapCtx).
// jstack: one row of jump-stack slots per possible CPU. state: the per-CPU
// struct traversal of the packet being judged. Load fills each map with
// one BPF_MAP_UPDATE_BATCH of bpf2go's types.
//
// # Evaluation and classification
//
// A bpf_loop runs ipt_do_table's loop: each step searches the first entry
// at or after a position that ends the search (matches, hotdrops, or
// reaches a kernel match), counts a match (bytes: tot_len) and applies its
// target (ACCEPT, DROP, QUEUE, NFQUEUE, ERROR, RETURN, jumps within
// ip_tables' stacksize, gotos, fall-through past a chain's end). The search
// is classified (classify.go): within a segment (a run between chain
// starts), the entries of one shape of exact conditions (addresses under
// masks, protocol, tcp/udp port blocks) are hashed by those values into
// buckets; a search costs one lookup per group present plus the
// candidates it checks in full, and the segment's other entries form a
// linear list. Matches: addresses, interfaces, protocol, fragments, tcp
// (ports, flags, options), udp, icmp, multiport rev 1, iprange rev 1,
// comment, conntrack rev 1-3, state; every inversion.
//
// # Hotdrop
//
// ip_tables drops a packet at the first entry whose match hotdrops it (a
// transport header shorter than the match reads, a tcp fragment at offset
// 1, tcp options cut short). For a packet that could hotdrop (risky), each
// group keyed by ports is looked up in its bucket keyed without the ports
// (an entry hotdrops whatever its ports), so the first candidate that
// hotdrops is found with the same number of lookups: no walk of every
// rule (TestHotdropCost).
//
// # Callouts
//
// A match or target that only the kernel can run (ipt.KernelExt) gets an
// index in Spec.Exts. A record of kind callout ends a search like a match
// would; if its entry is the lowest found, the program sets ctx->callout
// and returns BPFILTER_VERDICT_CALLOUT, keeping its whole traversal in the
// state map. The module runs the extension and reruns the program with
// BPFILTER_CTX_RESUME: ctx->result 0 continues with the next entry, 1 with
// the entry's next match. A kernel target is counted first, then called
// out; on resume (XT_CONTINUE) the walk goes on with the next entry. So
// kernel extensions run exactly when and in the order ip_tables would run
// them: an entry's keys come only from what precedes its first kernel
// match, and no kernel match of an entry is run while a lower entry could
// still end the search.
//
// # Conntrack
//
// conntrack and state are evaluated in BPF from the ctx's ct_* fields, as
// conntrack_mt and state_mt do (UNTRACKED is 1<<8 for conntrack, 1<<6 for
// state; SNAT and DNAT from ct_status). Spec.Conntrack says whether the
// module must take conntrack (nf_ct_netns_get) and fill those fields.
//
// # Verifier
//
// The bpf_loop callbacks only call global functions, which the verifier
// checks once each for any state: its work (about 3,000 instructions for
// the general program, 48 for the straight-line one) does not depend on
// the table.
package datapath
