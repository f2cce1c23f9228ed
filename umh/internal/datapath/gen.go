package datapath

// The BPF C program, compiled by bpf2go with Debian's clang 14: make builds
// the object from bpf/ (it is a build output, not committed) and the Go
// types beside it, which are committed; TestGenerated checks that both
// are what the sources give. Only the little-endian object is built: the umh runs on
// the host's architecture.
//go:generate go tool bpf2go -cc clang -strip llvm-strip -target bpfel -type hook_cfg -type ports_match -type icmp_match -type multiport_match -type iprange_match -type conntrack_match -type state_match -type callout_match -type mp_range -type action -type kind -type mp_which -type found -type phase datapath bpf/datapath.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror
