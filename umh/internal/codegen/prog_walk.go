package codegen

import (
	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/cilium/ebpf/asm"
)

// walkOneFn evaluates one record: candidate entry stWC, record stWR (the
// entry's own record, or one of its continuation records). A candidate
// that fails moves to the next one: stWC+1 when walking linearly, the
// next in the lists map otherwise. Returns 1 to stop the walk. Registers: R6
// state, R7 record, R8 candidate, R9 record index.
func (b *progBuilder) walkOneFn() *fn {
	f := newGlobal(b.name(fnWalkOne), 1)
	globalPrologue(f)
	stop, rec, eval := f.newLabel("stop"), f.newLabel("rec"), f.newLabel("eval")
	advance, hotdrop, found := f.newLabel("advance"), f.newLabel("hotdrop"), f.newLabel("found")
	f.emit(
		ld32(asm.R1, asm.R6, stHotdrop),
		asm.JNE.Imm(asm.R1, 0, stop),
		ld32(asm.R8, asm.R6, stWC),
		ld32(asm.R9, asm.R6, stWR),
		asm.JNE.Reg(asm.R8, asm.R9, rec),
		// A new candidate: past the best one found, or past the end?
		ld32(asm.R1, asm.R6, stWBest),
		asm.JGE.Reg(asm.R8, asm.R1, stop),
		ld32(asm.R1, asm.R6, stWEnd),
		asm.JGT.Reg(asm.R8, asm.R1, stop),
	)
	f.label(rec)
	f.emit(st32(asm.RFP, cbKey, asm.R9))
	f.lookup(mapRules, cbKey)
	f.emit(
		asm.JEq.Imm(asm.R0, 0, stop),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.JNE.Reg(asm.R8, asm.R9, eval),
		ld32(asm.R1, asm.R6, stPos),
		asm.JLT.Reg(asm.R8, asm.R1, advance), // before the search start
	)
	f.label(eval)
	b.ipMatch(f, advance)
	b.match(f, advance, hotdrop)
	f.emit(
		ld32(asm.R1, asm.R7, recCont),
		asm.JEq.Imm(asm.R1, none, found),
		st32(asm.R6, stWR, asm.R1),
	)
	f.ret(0)

	f.label(found)
	f.emit(
		st32(asm.R6, stWBest, asm.R8),
		ld32(asm.R1, asm.R7, recAction),
		st32(asm.R6, stAction, asm.R1),
		ld32(asm.R1, asm.R7, recTarget),
		st32(asm.R6, stTarget, asm.R1),
	)
	f.ret(1)

	list, set := f.newLabel("list"), f.newLabel("set")
	f.label(advance)
	f.emit(
		ld32(asm.R1, asm.R6, stWLinear),
		asm.JEq.Imm(asm.R1, 0, list),
		asm.Mov.Reg(asm.R1, asm.R8),
		asm.Add.Imm(asm.R1, 1),
		asm.Ja.Label(set),
	)
	// The next entry of the bucket or linear list: the next place in the
	// lists map (a list ends with none, which stops the walk).
	f.label(list)
	f.emit(
		ld32(asm.R1, asm.R6, stWL),
		asm.Add.Imm(asm.R1, 1),
		st32(asm.R6, stWL, asm.R1),
		st32(asm.RFP, cbKey, asm.R1),
	)
	f.lookup(mapLists, cbKey)
	f.emit(
		asm.JEq.Imm(asm.R0, 0, stop),
		ld32(asm.R1, asm.R0, 0),
	)
	f.label(set)
	f.emit(
		st32(asm.R6, stWC, asm.R1),
		st32(asm.R6, stWR, asm.R1),
	)
	f.ret(0)

	f.label(hotdrop)
	f.emit(st32imm(asm.R6, stHotdrop, 1))
	f.label(stop)
	f.ret(1)
	return f
}

// ipMatch is ip_packet_match on record R7.
func (b *progBuilder) ipMatch(f *fn, fail string) {
	// Source and destination under their masks.
	for _, a := range []struct {
		st, addr, mask int
		inv            int32
	}{{stSaddr, recSrc, recSmsk, ipt.InvSrcIP}, {stDaddr, recDst, recDmsk, ipt.InvDstIP}} {
		f.emit(
			ld32(asm.R3, asm.R7, recInv),
			ld32(asm.R1, asm.R6, a.st),
			ld32(asm.R2, asm.R7, a.mask),
			asm.And.Reg(asm.R1, asm.R2),
			ld32(asm.R2, asm.R7, a.addr),
		)
		f.invCheck(func(m string) { f.emit(asm.JNE.Reg(asm.R1, asm.R2, m)) }, asm.R3, a.inv, fail)
	}
	// Interfaces: ifname_compare_aligned.
	for _, i := range []struct {
		st, name, mask int
		inv            int32
		need           bool
	}{{stIn, recIn, recInMask, ipt.InvViaIn, b.facts.needIn}, {stOut, recOut, recOutMask, ipt.InvViaOut, b.facts.needOut}} {
		if !i.need {
			// No entry has a mask: the comparison is 0 for any name.
			f.emit(ld32(asm.R3, asm.R7, recInv))
			f.emit(asm.JSet.Imm(asm.R3, i.inv, fail))
			continue
		}
		f.emit(
			ld32(asm.R3, asm.R7, recInv),
			ld64(asm.R1, asm.R6, i.st),
			ld64(asm.R2, asm.R7, i.name),
			asm.Xor.Reg(asm.R1, asm.R2),
			ld64(asm.R2, asm.R7, i.mask),
			asm.And.Reg(asm.R1, asm.R2),
			ld64(asm.R4, asm.R6, i.st+8),
			ld64(asm.R2, asm.R7, i.name+8),
			asm.Xor.Reg(asm.R4, asm.R2),
			ld64(asm.R2, asm.R7, i.mask+8),
			asm.And.Reg(asm.R4, asm.R2),
			asm.Or.Reg(asm.R1, asm.R4),
		)
		f.invCheck(func(m string) { f.emit(asm.JNE.Imm(asm.R1, 0, m)) }, asm.R3, i.inv, fail)
	}
	// Protocol, if the entry names one.
	noProto := f.newLabel("noproto")
	f.emit(
		ld32(asm.R2, asm.R7, recProto),
		asm.JEq.Imm(asm.R2, 0, noProto),
		ld32(asm.R3, asm.R7, recInv),
		ld32(asm.R1, asm.R6, stProto),
	)
	f.invCheck(func(m string) { f.emit(asm.JNE.Reg(asm.R1, asm.R2, m)) }, asm.R3, ipt.InvProto, fail)
	f.label(noProto)
	// Fragments: IPT_F_FRAG asks for a non-first fragment.
	f.emit(
		ld32(asm.R3, asm.R7, recInv),
		ld32(asm.R1, asm.R7, recFlags),
		ld32(asm.R2, asm.R6, stFragoff),
	)
	f.invCheck(func(m string) {
		no := f.newLabel("nofrag")
		f.emit(
			asm.JEq.Imm(asm.R1, 0, no),
			asm.JEq.Imm(asm.R2, 0, m),
		)
		f.label(no)
	}, asm.R3, ipt.InvFrag, fail)
}

// match evaluates the match of record R7, if it has one.
func (b *progBuilder) match(f *fn, fail, hotdrop string) {
	done, transport, ports := f.newLabel("mdone"), f.newLabel("transport"), f.newLabel("ports")
	icmp, multiport, iprange := f.newLabel("icmp"), f.newLabel("multiport"), f.newLabel("iprange")
	whole := f.newLabel("whole")
	f.emit(
		ld32(asm.R1, asm.R7, recKind),
		asm.JEq.Imm(asm.R1, kindNone, done),
		asm.JEq.Imm(asm.R1, kindIPRange, iprange),
	)
	// tcp, udp, icmp, multiport: no later fragment matches; tcp hotdrops a
	// fragment at offset 1; a transport header too short hotdrops.
	f.label(transport)
	f.emit(
		ld32(asm.R2, asm.R6, stFragoff),
		asm.JEq.Imm(asm.R2, 0, whole),
		ld32(asm.R3, asm.R7, recTCP),
		asm.JEq.Imm(asm.R3, 0, fail),
		asm.JNE.Imm(asm.R2, 1, fail),
		asm.JNE.Imm(asm.R1, kindPorts, fail),
		asm.Ja.Label(hotdrop),
	)
	f.label(whole)
	f.emit(
		ld32(asm.R2, asm.R6, stL4len),
		ld32(asm.R3, asm.R7, recNeed),
		asm.JLT.Reg(asm.R2, asm.R3, hotdrop),
		asm.JEq.Imm(asm.R1, kindPorts, ports),
		asm.JEq.Imm(asm.R1, kindICMP, icmp),
		asm.JEq.Imm(asm.R1, kindMultiport, multiport),
		asm.Ja.Label(fail),
	)

	// tcp_mt, udp_mt: port ranges, then tcp flags.
	f.label(ports)
	f.emit(ld32(asm.R3, asm.R7, recPInv))
	for _, p := range []struct {
		st, lo, hi int
		inv        int32
	}{{stSport, recSptLo, recSptHi, ipt.TCPInvSrcPorts}, {stDport, recDptLo, recDptHi, ipt.TCPInvDstPorts}} {
		f.invCheck(func(m string) {
			f.emit(
				ld32(asm.R1, asm.R6, p.st),
				ld32(asm.R2, asm.R7, p.lo),
				asm.JLT.Reg(asm.R1, asm.R2, m),
				ld32(asm.R2, asm.R7, p.hi),
				asm.JGT.Reg(asm.R1, asm.R2, m),
			)
		}, asm.R3, p.inv, fail)
	}
	f.invCheck(func(m string) {
		f.emit(
			ld32(asm.R1, asm.R6, stTFlags),
			ld32(asm.R2, asm.R7, recFMask),
			asm.And.Reg(asm.R1, asm.R2),
			ld32(asm.R2, asm.R7, recFCmp),
			asm.JNE.Reg(asm.R1, asm.R2, m),
		)
	}, asm.R3, ipt.TCPInvFlags, fail)
	if b.facts.tcpOpts {
		b.tcpOption(f, done, fail, hotdrop)
	}
	f.emit(asm.Ja.Label(done))

	// icmp_match: type 0xFF is any type; code is a range.
	f.label(icmp)
	f.emit(ld32(asm.R3, asm.R7, recIInv))
	f.invCheck(func(m string) {
		hit := f.newLabel("icmphit")
		f.emit(
			ld32(asm.R1, asm.R7, recIType),
			asm.JEq.Imm(asm.R1, 0xFF, hit),
			ld32(asm.R2, asm.R6, stIType),
			asm.JNE.Reg(asm.R1, asm.R2, m),
			ld32(asm.R1, asm.R6, stICode),
			ld32(asm.R2, asm.R7, recICMin),
			asm.JLT.Reg(asm.R1, asm.R2, m),
			ld32(asm.R2, asm.R7, recICMax),
			asm.JGT.Reg(asm.R1, asm.R2, m),
		)
		f.label(hit)
	}, asm.R3, ipt.ICMPInv, fail)
	f.emit(asm.Ja.Label(done))

	// ports_match_v1: a port outside 0..65535 stands for "not compared".
	f.label(multiport)
	f.emit(
		ld32(asm.R3, asm.R7, recMPInv),
		asm.JEq.Imm(asm.R3, 2, done), // an invert beyond 1: always true
		ld32(asm.R4, asm.R6, stSport),
		ld32(asm.R5, asm.R6, stDport),
		ld32(asm.R1, asm.R7, recMPFlags),
	)
	srcOK, dstOK := f.newLabel("mpsrc"), f.newLabel("mpdst")
	f.emit(asm.JNE.Imm(asm.R1, mpDst, srcOK), asm.Mov.Imm(asm.R4, 0x10000))
	f.label(srcOK)
	f.emit(asm.JNE.Imm(asm.R1, mpSrc, dstOK), asm.Mov.Imm(asm.R5, 0x10000))
	f.label(dstOK)
	f.invCheck(func(m string) {
		hit := f.newLabel("mphit")
		for k := 0; k < ipt.MultiPorts; k++ {
			tryDst, next := f.newLabel("mptd"), f.newLabel("mpnext")
			f.emit(
				asm.LoadMem(asm.R1, asm.R7, int16(recMPRanges+4*k), asm.Half),
				asm.LoadMem(asm.R2, asm.R7, int16(recMPRanges+4*k+2), asm.Half),
				asm.JLT.Reg(asm.R4, asm.R1, tryDst),
				asm.JLE.Reg(asm.R4, asm.R2, hit),
			)
			f.label(tryDst)
			f.emit(
				asm.JLT.Reg(asm.R5, asm.R1, next),
				asm.JLE.Reg(asm.R5, asm.R2, hit),
			)
			f.label(next)
		}
		f.emit(asm.Ja.Label(m))
		f.label(hit)
	}, asm.R3, 1, fail)
	f.emit(asm.Ja.Label(done))

	// iprange_mt4: host-order bounds, each side if its flag is set.
	f.label(iprange)
	f.emit(ld32(asm.R3, asm.R7, recIRFlags))
	for _, r := range []struct {
		flag, inv  int32
		st, lo, hi int
	}{{ipt.IPRangeSrc, ipt.IPRangeSrcInv, stSaddrH, recIRSMin, recIRSMax}, {ipt.IPRangeDst, ipt.IPRangeDstInv, stDaddrH, recIRDMin, recIRDMax}} {
		skip, check := f.newLabel("irskip"), f.newLabel("ircheck")
		f.emit(asm.JSet.Imm(asm.R3, r.flag, check), asm.Ja.Label(skip))
		f.label(check)
		f.invCheck(func(m string) {
			f.emit(
				ld32(asm.R1, asm.R6, r.st),
				ld32(asm.R2, asm.R7, r.lo),
				asm.JLT.Reg(asm.R1, asm.R2, m),
				ld32(asm.R2, asm.R7, r.hi),
				asm.JGT.Reg(asm.R1, asm.R2, m),
			)
		}, asm.R3, r.inv, fail)
		f.label(skip)
	}
	f.label(done)
	f.emit(asm.Mov.Imm(asm.R0, 0))
}

// tcpOption is tcp_find_option for the option kind of record R7 (R3 holds
// the tcp invflags): doff < 5 or options cut short hotdrop; no options
// finds nothing; else the kind is looked up in the bits the prologue's
// scan left.
func (b *progBuilder) tcpOption(f *fn, done, fail, hotdrop string) {
	f.emit(
		ld32(asm.R1, asm.R7, recOpt),
		asm.JEq.Imm(asm.R1, 0, done),
		ld32(asm.R2, asm.R6, stOptSt),
		asm.JEq.Imm(asm.R2, optHotdrop, hotdrop),
	)
	f.invCheck(func(m string) {
		f.emit(
			asm.JNE.Imm(asm.R2, optScanned, m),
			asm.And.Imm(asm.R1, 0xFF),
			asm.Mov.Reg(asm.R2, asm.R1),
			asm.RSh.Imm(asm.R2, 6),
			asm.LSh.Imm(asm.R2, 3),
			asm.Mov.Reg(asm.R4, asm.R6),
			asm.Add.Reg(asm.R4, asm.R2),
			ld64(asm.R4, asm.R4, stOptBits),
			asm.And.Imm(asm.R1, 63),
			asm.RSh.Reg(asm.R4, asm.R1),
			asm.And.Imm(asm.R4, 1),
			asm.JEq.Imm(asm.R4, 0, m),
		)
	}, asm.R3, ipt.TCPInvOption, fail)
}
