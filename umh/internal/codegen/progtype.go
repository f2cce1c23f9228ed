package codegen

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// progType is what depends on where the program runs: how it finds the
// IPv4 header, and what it returns. Only one exists: a
// BPF_PROG_TYPE_SCHED_CLS program that the module runs at netfilter's
// IPv4 hooks (kmod/progctx.h), whose skb starts at the IPv4 header and
// which returns a netfilter verdict.
type progType struct {
	typ          ebpf.ProgramType
	accept, drop int32
	loadNet      func(f *fn, off int32, dst int, size int32, fail string)
	loadNetVar   func(f *fn, offReg asm.Register, dst int, sizeReg asm.Register, fail string)
}

// Netfilter verdicts, as kmod/progctx.h defines them (pinned by
// progctx_test.go).
const (
	NFDrop        = 0      // NF_DROP, BPFILTER_VERDICT_DROP
	NFAccept      = 1      // NF_ACCEPT, BPFILTER_VERDICT_ACCEPT
	NFQueue       = 3      // NF_QUEUE, BPFILTER_VERDICT_QUEUE
	NFQueueBypass = 0x8000 // NF_VERDICT_FLAG_QUEUE_BYPASS
	NFQueueShift  = 16     // BPFILTER_VERDICT_QUEUE_SHIFT
)

// QueueVerdict is NF_QUEUE_NR(queue), with the bypass flag if asked.
func QueueVerdict(queue uint16, bypass bool) uint32 {
	v := uint32(queue)<<NFQueueShift | NFQueue
	if bypass {
		v |= NFQueueBypass
	}
	return v
}

// nfType: the program at a netfilter hook. Every packet there is IPv4
// (NFPROTO_IPV4), so skb->protocol is not looked at, as ip_tables does
// not. The IPv4 header is read with
// bpf_skb_load_bytes_relative(BPF_HDR_START_NET), which finds it whether
// skb->data is at the network header (the hooks) or at a link-layer
// header (BPF_PROG_TEST_RUN, which pushes the Ethernet header back for
// SCHED_CLS).
var nfType = progType{
	typ:    ebpf.SchedCLS,
	accept: NFAccept,
	drop:   NFDrop,
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
}

// struct bpfilter_ctx (kmod/progctx.h): the value, key 0, of the per-CPU
// array MapCtx that the module fills before each run.
const (
	ctxHook       = 0
	ctxInIfindex  = 4
	ctxOutIfindex = 8
	ctxIn         = 16 // char in[IFNAMSIZ]
	ctxOut        = 32 // char out[IFNAMSIZ]
	CtxSize       = 48 // sizeof(struct bpfilter_ctx)
	ifNamSize     = 16 // BPFILTER_IFNAMSIZ
)
