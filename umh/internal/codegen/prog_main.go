package codegen

import (
	"github.com/cilium/ebpf/asm"
)

// progFacts are the numbers of a compiled table that the program's
// instructions carry as immediates.
type progFacts struct {
	numEntries int
	numRecords int
	numGroups  int
	stackSize  int // ip_tables' stacksize: the jump limit
	stackCap   int // slots in the jump stack map value
	needIn     bool
	needOut    bool
	tcpOpts    bool // some tcp match looks for an option
	needL4     bool // some match reads the transport header
}

// progBuilder emits the program of one hook.
type progBuilder struct {
	pt     progType
	hook   Hook
	facts  progFacts
	linear bool
	start  int // hook entry index
	under  int // underflow index
	prefix string
	// first: the hook's first entry matches every packet and ends the
	// walk with verdict (ACCEPT, DROP, QUEUE): the hook's chain is just
	// its policy, or starts with such a rule. The program is then
	// straight-line code (firstFn).
	first   bool
	verdict int32
}

// Frame of the main function: the state, then the buffers.
const (
	fpState                       = -stateSize   // state
	fpIP                          = fpState - 24 // IP header (20 bytes)
	fpL4                          = fpIP - 24    // first 20 transport bytes
	fpKey                         = fpL4 - 8     // a map key
	fpLow                         = fpKey        // lowest slot zeroed
	l4Bytes                       = 20           // transport bytes read
	hdrNet                        = 1            // BPF_HDR_START_NET
	ipOff                         = 0x1FFF       // IP_OFFSET
	protoTCP, protoUDP, protoICMP = 6, 17, 1
)

func (b *progBuilder) name(s string) string { return b.prefix + "_" + s }

func (b *progBuilder) instructions() asm.Instructions {
	if b.first {
		return b.firstFn().done()
	}
	var insns asm.Instructions
	fns := []*fn{b.mainFn(), b.stepFn(), b.walkFn(), b.stepBeginFn(), b.stepEndFn(), b.walkOneFn()}
	if b.facts.tcpOpts {
		fns = append(fns, b.optScanFn())
	}
	if b.groups() {
		fns = append(fns, b.groupFn(), b.stepListFn(), b.groupBeginFn())
	}
	for _, f := range fns {
		insns = append(insns, f.done()...)
	}
	return insns
}

// groups: the program searches groups' buckets.
func (b *progBuilder) groups() bool { return b.facts.numGroups > 0 && !b.linear }

// mainFn is the program: the prologue of its type fills the state from
// the packet, then bpf_loop runs step until a verdict.
func (b *progBuilder) mainFn() *fn {
	f := newMain(b.prefix)
	pass := f.newLabel("pass")
	f.emit(asm.Mov.Reg(asm.R6, asm.R1))
	for off := fpLow; off < 0; off += 8 {
		f.emit(st64imm(asm.RFP, off, 0))
	}
	// The IP header. The IP layer drops what fails these checks before
	// ip_tables sees it, so the program lets it go unexamined.
	b.pt.loadNet(f, 0, fpIP, 20, pass)
	f.emit(
		asm.LoadMem(asm.R1, asm.RFP, fpIP, asm.Byte),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.RSh.Imm(asm.R2, 4),
		asm.JNE.Imm(asm.R2, 4, pass),
		asm.And.Imm(asm.R1, 0xF),
		asm.LSh.Imm(asm.R1, 2),
		asm.JLT.Imm(asm.R1, 20, pass),
		asm.Mov.Reg(asm.R7, asm.R1), // ihl in bytes
		asm.LoadMem(asm.R2, asm.RFP, fpIP+2, asm.Half),
		asm.HostTo(asm.BE, asm.R2, asm.Half), // tot_len
		asm.JLT.Reg(asm.R2, asm.R7, pass),
		st32(asm.RFP, fpState+stLen, asm.R2),
		asm.Mov.Reg(asm.R8, asm.R2),
		asm.Sub.Reg(asm.R8, asm.R7), // transport length
		st32(asm.RFP, fpState+stL4len, asm.R8),
		asm.LoadMem(asm.R2, asm.RFP, fpIP+6, asm.Half),
		asm.HostTo(asm.BE, asm.R2, asm.Half),
		asm.And.Imm(asm.R2, ipOff),
		st32(asm.RFP, fpState+stFragoff, asm.R2),
		asm.LoadMem(asm.R2, asm.RFP, fpIP+9, asm.Byte),
		st32(asm.RFP, fpState+stProto, asm.R2),
		ld32(asm.R2, asm.RFP, fpIP+12),
		st32(asm.RFP, fpState+stSaddr, asm.R2),
		asm.HostTo(asm.BE, asm.R2, asm.Word),
		st32(asm.RFP, fpState+stSaddrH, asm.R2),
		ld32(asm.R2, asm.RFP, fpIP+16),
		st32(asm.RFP, fpState+stDaddr, asm.R2),
		asm.HostTo(asm.BE, asm.R2, asm.Word),
		st32(asm.RFP, fpState+stDaddrH, asm.R2),
	)
	if b.facts.needL4 {
		b.transport(f, pass)
	}
	if b.facts.needL4 || b.linear {
		// Without a match that reads the transport header nothing
		// hotdrops: every packet may take the classified search.
		b.slowPath(f)
	}
	b.ifnames(f)
	f.emit(
		st32imm(asm.RFP, fpState+stPos, int32(b.start)),
		st32imm(asm.RFP, fpState+stVerdict, b.pt.drop),
		asm.Mov.Reg(asm.R9, asm.RFP),
		asm.Add.Imm(asm.R9, fpState),
	)
	f.loop(maxSteps, b.name(fnStep), asm.R9)
	f.emit(ld32(asm.R0, asm.RFP, fpState+stVerdict), asm.Return())
	f.label(pass)
	f.ret(b.pt.accept)
	return f
}

// transport reads the first transport bytes (ports, icmp type and code,
// tcp flags), if this is not a later fragment, and the tcp options if
// some rule looks for one. R7 is ihl, R8 the transport length.
func (b *progBuilder) transport(f *fn, pass string) {
	l4done, size := f.newLabel("l4done"), f.newLabel("size")
	f.emit(
		ld32(asm.R1, asm.RFP, fpState+stFragoff),
		asm.JNE.Imm(asm.R1, 0, l4done),
		// JLT rather than JEQ 0: 6.1's verifier only learns R8 >= 1
		// (a non-zero load size) from an unsigned comparison.
		asm.JLT.Imm(asm.R8, 1, l4done),
		asm.Mov.Reg(asm.R4, asm.R8),
		asm.JLE.Imm(asm.R4, l4Bytes, size),
		asm.Mov.Imm(asm.R4, l4Bytes),
	)
	f.label(size)
	b.pt.loadNetVar(f, asm.R7, fpL4, asm.R4, pass)
	f.emit(
		asm.JLT.Imm(asm.R8, 4, l4done),
		asm.LoadMem(asm.R2, asm.RFP, fpL4, asm.Half),
		asm.HostTo(asm.BE, asm.R2, asm.Half),
		st32(asm.RFP, fpState+stSport, asm.R2),
		asm.LoadMem(asm.R2, asm.RFP, fpL4+2, asm.Half),
		asm.HostTo(asm.BE, asm.R2, asm.Half),
		st32(asm.RFP, fpState+stDport, asm.R2),
		asm.LoadMem(asm.R2, asm.RFP, fpL4, asm.Byte),
		st32(asm.RFP, fpState+stIType, asm.R2),
		asm.LoadMem(asm.R2, asm.RFP, fpL4+1, asm.Byte),
		st32(asm.RFP, fpState+stICode, asm.R2),
		asm.JLT.Imm(asm.R8, 14, l4done),
		asm.LoadMem(asm.R2, asm.RFP, fpL4+13, asm.Byte),
		st32(asm.RFP, fpState+stTFlags, asm.R2),
	)
	f.label(l4done)
	if b.facts.tcpOpts {
		b.tcpOptions(f, pass)
	}
}

// firstFn is the program of a hook whose first entry matches every packet
// and has a verdict (an empty chain: its policy): it checks the IP header
// as mainFn does, counts the packet in that entry's counter as the general
// program would (packets += 1, bytes += tot_len) and returns the verdict,
// without the state, the transport header or bpf_loop.
func (b *progBuilder) firstFn() *fn {
	f := newMain(b.prefix)
	pass, nocount := f.newLabel("pass"), f.newLabel("nocount")
	f.emit(asm.Mov.Reg(asm.R6, asm.R1))
	b.pt.loadNet(f, 0, fpIP, 20, pass)
	f.emit(
		asm.LoadMem(asm.R1, asm.RFP, fpIP, asm.Byte),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.RSh.Imm(asm.R2, 4),
		asm.JNE.Imm(asm.R2, 4, pass),
		asm.And.Imm(asm.R1, 0xF),
		asm.LSh.Imm(asm.R1, 2),
		asm.JLT.Imm(asm.R1, 20, pass),
		asm.LoadMem(asm.R7, asm.RFP, fpIP+2, asm.Half),
		asm.HostTo(asm.BE, asm.R7, asm.Half), // tot_len
		asm.JLT.Reg(asm.R7, asm.R1, pass),
		st32imm(asm.RFP, fpKey, int32(b.start)),
	)
	f.lookup(mapCounters, fpKey)
	f.emit(
		asm.JEq.Imm(asm.R0, 0, nocount),
		ld64(asm.R1, asm.R0, cntPackets),
		asm.Add.Imm(asm.R1, 1),
		st64(asm.R0, cntPackets, asm.R1),
		ld64(asm.R1, asm.R0, cntBytes),
		asm.Add.Reg(asm.R1, asm.R7),
		st64(asm.R0, cntBytes, asm.R1),
	)
	f.label(nocount)
	f.emit(asm.Mov.Imm32(asm.R0, b.verdict), asm.Return())
	f.label(pass)
	f.ret(b.pt.accept)
	return f
}

// slowPath sets stSlow for the packets on which a match could hotdrop:
// a transport header shorter than its protocol's (tcp 20, udp and icmp 8,
// the other protocols multiport accepts 4 bytes), a tcp fragment at
// offset 1. On those, skipping entries by classification could skip the
// entry that hotdrops, so they walk every entry.
func (b *progBuilder) slowPath(f *fn) {
	slow, done, whole := f.newLabel("slow"), f.newLabel("slowdone"), f.newLabel("whole")
	if b.linear {
		f.emit(st32imm(asm.RFP, fpState+stSlow, 1))
		return
	}
	if b.facts.tcpOpts {
		f.emit(
			ld32(asm.R1, asm.RFP, fpState+stOptSt),
			asm.JEq.Imm(asm.R1, optHotdrop, slow),
		)
	}
	f.emit(
		ld32(asm.R1, asm.RFP, fpState+stFragoff),
		ld32(asm.R2, asm.RFP, fpState+stProto),
		asm.JEq.Imm(asm.R1, 0, whole),
		asm.JNE.Imm(asm.R1, 1, done),
		asm.JNE.Imm(asm.R2, protoTCP, done),
		asm.Ja.Label(slow),
	)
	need := f.newLabel("need")
	f.label(whole)
	f.emit(asm.Mov.Imm(asm.R3, 20))
	f.emit(asm.JEq.Imm(asm.R2, protoTCP, need))
	f.emit(asm.Mov.Imm(asm.R3, 8))
	f.emit(asm.JEq.Imm(asm.R2, protoUDP, need), asm.JEq.Imm(asm.R2, protoICMP, need))
	f.emit(asm.Mov.Imm(asm.R3, 4))
	f.emit(asm.JEq.Imm(asm.R2, 136, need), asm.JEq.Imm(asm.R2, 132, need), asm.JEq.Imm(asm.R2, 33, need))
	f.emit(asm.Mov.Imm(asm.R3, 0))
	f.label(need)
	f.emit(asm.JGE.Reg(asm.R8, asm.R3, done))
	f.label(slow)
	f.emit(st32imm(asm.RFP, fpState+stSlow, 1))
	f.label(done)
	f.emit(asm.Mov.Imm(asm.R0, 0))
}

// ifnames copies the names of the hook's interfaces from the ctx map
// (struct bpfilter_ctx, filled by the module) into the state, if some
// rule compares them; a missing interface (or ctx) has the empty name.
func (b *progBuilder) ifnames(f *fn) {
	in := b.facts.needIn && b.hook.In
	out := b.facts.needOut && b.hook.Out
	if !in && !out {
		return
	}
	skip := f.newLabel("noctx")
	f.emit(st32imm(asm.RFP, fpKey, 0))
	f.lookup(mapCtx, fpKey)
	f.emit(asm.JEq.Imm(asm.R0, 0, skip))
	for _, x := range []struct {
		want     bool
		src, dst int
	}{{in, ctxIn, fpState + stIn}, {out, ctxOut, fpState + stOut}} {
		if !x.want {
			continue
		}
		f.emit(
			ld64(asm.R1, asm.R0, x.src),
			st64(asm.RFP, x.dst, asm.R1),
			ld64(asm.R1, asm.R0, x.src+8),
			st64(asm.RFP, x.dst+8, asm.R1),
		)
	}
	f.label(skip)
	f.emit(asm.Mov.Imm(asm.R0, 0))
}
