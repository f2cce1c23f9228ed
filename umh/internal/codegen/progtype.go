package codegen

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// progType is what differs between program types: how the program finds
// the IPv4 header and the interfaces, and what it returns. Only TC exists:
// 6.1 has no netfilter BPF hook and no TCX, and a direct-action cls_bpf
// filter on a clsact qdisc can be attached to any interface of any
// namespace at any time.
type progType struct {
	typ          ebpf.ProgramType
	accept, drop int32
	isIPv4       func(f *fn, pass string)
	loadNet      func(f *fn, off int32, dst int, size int32, fail string)
	loadNetVar   func(f *fn, offReg asm.Register, dst int, sizeReg asm.Register, fail string)
	ifindex      func(f *fn, src Iface, dst asm.Register)
}

// __sk_buff offsets.
const (
	skbProtocol       = 16
	skbIngressIfindex = 36
	skbIfindex        = 40
)

// TC verdicts.
const (
	tcActOK   = 0 // TC_ACT_OK
	tcActShot = 2 // TC_ACT_SHOT
)

// tcType: BPF_PROG_TYPE_SCHED_CLS in direct-action mode. The IPv4 header
// is read with bpf_skb_load_bytes_relative(BPF_HDR_START_NET), so the
// program works the same on ingress and egress and on devices with or
// without a link-layer header.
var tcType = progType{
	typ:    ebpf.SchedCLS,
	accept: tcActOK,
	drop:   tcActShot,
	isIPv4: func(f *fn, pass string) {
		// skb->protocol is big endian: htons(ETH_P_IP) as a u32 load.
		f.emit(
			ld32(asm.R1, asm.R6, skbProtocol),
			asm.JNE.Imm(asm.R1, int32(ethPIP>>8|(ethPIP&0xFF)<<8), pass),
		)
	},
	loadNet: func(f *fn, off int32, dst int, size int32, fail string) {
		f.emit(
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Imm(asm.R2, off),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, int32(dst)),
			asm.Mov.Imm(asm.R4, size),
			asm.Mov.Imm(asm.R5, hdrNet),
			asm.FnSkbLoadBytesRelative.Call(),
			asm.JNE.Imm(asm.R0, 0, fail),
		)
	},
	loadNetVar: func(f *fn, offReg asm.Register, dst int, sizeReg asm.Register, fail string) {
		f.emit(
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Reg(asm.R2, offReg),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, int32(dst)),
		)
		if sizeReg != asm.R4 {
			f.emit(asm.Mov.Reg(asm.R4, sizeReg))
		}
		f.emit(
			asm.Mov.Imm(asm.R5, hdrNet),
			asm.FnSkbLoadBytesRelative.Call(),
			asm.JNE.Imm(asm.R0, 0, fail),
		)
	},
	ifindex: func(f *fn, src Iface, dst asm.Register) {
		off := skbIfindex
		if src == IfaceIngress {
			off = skbIngressIfindex
		}
		f.emit(ld32(dst, asm.R6, off))
	},
}
