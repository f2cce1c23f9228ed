// Package codegen compiles an iptables table (package ipt) into BPF with
// cilium/ebpf's asm package: no C compiler at run time.
//
// # Programs
//
// Compile builds one program per hook (INPUT, FORWARD, OUTPUT of the filter
// table), all sharing the maps. The module (kmod/progctx.h) runs them at
// netfilter's own hooks, NF_INET_LOCAL_IN, NF_INET_FORWARD and
// NF_INET_LOCAL_OUT at priority NF_IP_PRI_FILTER, where iptable_filter
// runs. The program type is BPF_PROG_TYPE_SCHED_CLS: its context is the
// skb, whose data starts at the IPv4 header there; the programs read the
// header with bpf_skb_load_bytes_relative from the network header, which
// BPF_PROG_TEST_RUN (an Ethernet frame) serves as well. They return a
// netfilter verdict, as an ip_tables target does: NF_ACCEPT, NF_DROP, or
// NF_QUEUE with the queue number in the upper 16 bits and the bypass
// flag (QueueVerdict). Only the prologue depends on the program type
// (progtype.go). A packet whose header the IP layer would refuse (version,
// ihl, tot_len) is let through unexamined and uncounted: ip_tables never
// sees it either. The programs never write __sk_buff.cb.
//
// # Interfaces
//
// The programs compare interface names at run time, as ip_packet_match
// does (all 16 bytes under the mask, inversion; iptables encodes "eth+" in
// the mask). The names come from the ctx map (MapCtx, a per-CPU array of
// one struct bpfilter_ctx) that the module fills before each run with the
// hook's state->in and state->out: INPUT has an input interface only,
// OUTPUT an output one only, FORWARD both (Hook.In, Hook.Out); a missing
// interface has the empty name, as ip_tables' nulldevname. The map is read
// only if some rule names an interface, but every collection has one: the
// module takes it with the programs.
//
// # Evaluation
//
// Rules are data: the rules map holds one fixed-size record per entry (its
// ipt_ip part and first match) plus continuation records for further
// matches, in match order. A bpf_loop runs ipt_do_table's loop: each step
// finds the first entry at or after a position that matches, counts it
// (per-CPU {packets, bytes}, bytes being the IP packet length, tot_len, as
// skb->len at the ip_tables hooks), and applies its target: ACCEPT, DROP,
// QUEUE and NFQUEUE (NF_QUEUE; one queue, as package ipt accepts), ERROR
// (drop), RETURN (pop, or the hook's underflow), a jump (push unless it is a goto or the next entry; beyond
// ip_tables' stacksize the packet is dropped), falling through to the next
// entry and past a chain's end. Matches: addresses under masks, interfaces,
// protocol, fragments (IPT_F_FRAG: non-first fragments), tcp (ports, flags,
// options), udp, icmp (type 0xFF is any), multiport rev 1, iprange rev 1,
// comment; every inversion; hotdrop where ip_tables hotdrops (a transport
// header shorter than the match reads, a tcp fragment at offset 1, a tcp
// data offset below 5 or options cut short).
//
// Two shortcuts leave the result unchanged. A hook whose first entry
// matches every packet and has a verdict (ACCEPT, DROP, QUEUE, NFQUEUE),
// which is what a chain of no rules, just its policy, is, gets a
// straight-line program (firstFn): it checks the IP header as above,
// counts the packet in that entry's counter and returns the verdict, with
// no state, no transport header and no bpf_loop. And when no match reads
// the transport header (tcp, udp, icmp, multiport), the general program
// does not read it either, nor looks for hotdrop packets. Both rely on what
// the IP layer guarantees at the hooks (the skb holds tot_len bytes): a
// packet cut shorter than its tot_len, which the general program lets
// through uncounted when its transport bytes are missing, is counted.
//
// The search for the first matching entry is classified (classify.go): the
// entries of a segment (a run between chain starts) that share a shape of
// exact conditions (source and destination under masks, protocol, tcp/udp
// ports) are hashed by those values; a port range is keyed by each of the
// (at most 4) aligned blocks of ports it touches, blocks whose size depends
// only on the range's width, so that ranges of similar width share a
// shape, and a bucket lists its entries in the lists map. A search costs
// one hash lookup per shape present in the segment (fewer: a group whose
// keys all agree on bits where the packet differs is skipped without one)
// plus the candidates it checks in full, not one check per rule. Other
// entries stay on a linear list. Packets on which some match could hotdrop
// walk every entry (skipping one could skip the hotdrop), as does
// everything with Options.Linear.
//
// # Loading
//
// The maps' specs carry no Contents: Compile keeps each map's elements as
// one batch and Load writes it with one BPF_MAP_UPDATE_BATCH per map
// (element by element on a kernel without the batch API), not one system
// call per element (a table of 10,000 rules has some 30,000).
//
// # Verifier
//
// The bpf_loop callbacks are tiny static functions that only call bpf_loop
// and BTF global functions; the global functions, which do the work, see
// the per-packet state as opaque memory and are verified once each. So the
// verifier's work (about 1,500 instructions, plus 15,000 when a rule looks
// for a tcp option) does not depend on the table: its limits are never what
// fails, whatever the number of rules and chains.
package datapath
