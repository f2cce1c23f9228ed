// Package codegen compiles an iptables table (package ipt) into BPF with
// cilium/ebpf's asm package: no C compiler at run time.
//
// # Programs
//
// Compile builds one program per hook (INPUT, FORWARD, OUTPUT of the filter
// table), all sharing the maps. The program type is a TC classifier
// (BPF_PROG_TYPE_SCHED_CLS, direct action: TC_ACT_OK accepts, TC_ACT_SHOT
// drops): Linux 6.1 has no netfilter BPF hook and no TCX, and a cls_bpf
// filter on a clsact qdisc can be attached to any interface of any
// namespace. Only the prologue depends on the program type (progtype.go):
// it reads the IPv4 header with bpf_skb_load_bytes_relative from the
// network header, so one program serves ingress and egress and devices with
// or without a link-layer header. A packet that is not IPv4, or whose header
// the IP layer would refuse (version, ihl, tot_len), is let through
// unexamined and uncounted: ip_tables never sees it either.
//
// # Interfaces
//
// The programs compare interface names at run time, as ip_packet_match
// does (name, mask, inversion; iptables encodes "eth+" in the mask). They
// find a name in the ifnames map (MapIfnames: ifindex -> [16]byte) that the
// attach layer keeps, so interfaces created after the rules were set work.
// Where the ifindex comes from is per hook (Hook.In, Hook.Out): INPUT on TC
// ingress takes __sk_buff.ifindex as input interface; OUTPUT on egress takes
// it as output; FORWARD on egress takes ifindex as output and
// ingress_ifindex as input. A missing interface has the empty name, as
// ip_tables' nulldevname. The map is read only if some rule names an
// interface.
//
// # Evaluation
//
// Rules are data: the rules map holds one fixed-size record per entry (its
// ipt_ip part and first match) plus continuation records for further
// matches, in match order. A bpf_loop runs ipt_do_table's loop: each step
// finds the first entry at or after a position that matches, counts it
// (per-CPU {packets, bytes}, bytes being the IP packet length, tot_len, as
// skb->len at the ip_tables hooks), and applies its target: ACCEPT, DROP,
// QUEUE (dropped: nothing listens), ERROR (drop), RETURN (pop, or the hook's
// underflow), a jump (push unless it is a goto or the next entry; beyond
// ip_tables' stacksize the packet is dropped), falling through to the next
// entry and past a chain's end. Matches: addresses under masks, interfaces,
// protocol, fragments (IPT_F_FRAG: non-first fragments), tcp (ports, flags,
// options), udp, icmp (type 0xFF is any), multiport rev 1, iprange rev 1,
// comment; every inversion; hotdrop where ip_tables hotdrops (a transport
// header shorter than the match reads, a tcp fragment at offset 1, a tcp
// data offset below 5 or options cut short).
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
// # Verifier
//
// The bpf_loop callbacks are tiny static functions that only call bpf_loop
// and BTF global functions; the global functions, which do the work, see
// the per-packet state as opaque memory and are verified once each. So the
// verifier's work (about 1,500 instructions, plus 15,000 when a rule looks
// for a tcp option) does not depend on the table: its limits are never what
// fails, whatever the number of rules and chains.
package codegen
