package codegen

import "github.com/cilium/ebpf/asm"

const fnOptScan = "optscan" // global: tcp_find_option's walk over the options

// maxOptLen is 60 - sizeof(struct tcphdr).
const maxOptLen = 40

// tcpOptions reads a tcp header's options into the state and scans them,
// for tables with --tcp-option. R7 is the ihl, R8 the transport length;
// the first 20 transport bytes are at fpL4.
func (b *progBuilder) tcpOptions(f *fn, pass string) {
	done, bad := f.newLabel("optdone"), f.newLabel("optbad")
	f.emit(
		ld32(asm.R1, asm.RFP, fpState+stProto),
		asm.JNE.Imm(asm.R1, protoTCP, done),
		ld32(asm.R1, asm.RFP, fpState+stFragoff),
		asm.JNE.Imm(asm.R1, 0, done),
		asm.JLT.Imm(asm.R8, 20, done), // the tcp match hotdrops first
		asm.LoadMem(asm.R4, asm.RFP, fpL4+12, asm.Byte),
		asm.RSh.Imm(asm.R4, 4),
		asm.LSh.Imm(asm.R4, 2), // doff * 4
		asm.JLT.Imm(asm.R4, 20, bad),
		asm.Sub.Imm(asm.R4, 20),
		st32(asm.RFP, fpState+stOptLen, asm.R4),
		asm.JLT.Imm(asm.R4, 1, done),
		asm.Mov.Reg(asm.R1, asm.R4),
		asm.Add.Imm(asm.R1, 20),
		asm.JGT.Reg(asm.R1, asm.R8, bad), // beyond tot_len
		asm.JGT.Imm(asm.R4, maxOptLen, bad),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, 20),
	)
	b.pt.loadNetVar(f, asm.R2, fpState+stOpts, asm.R4, pass)
	f.emit(
		st32imm(asm.RFP, fpState+stOptSt, optScanned),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, fpState),
		call(b.name(fnOptScan)),
		asm.Ja.Label(done),
	)
	f.label(bad)
	f.emit(st32imm(asm.RFP, fpState+stOptSt, optHotdrop))
	f.label(done)
	f.emit(asm.Mov.Imm(asm.R0, 0))
}

// optScanFn sets a bit in stOptBits for the kind at each position that
// tcp_find_option's loop visits:
//
//	for (i = 0; i < optlen; ) {
//		if (op[i] == option) return !invert;
//		if (op[i] < 2 || i == optlen - 1) i++;
//		else i += op[i + 1] ? : 1;
//	}
//
// unrolled over the 40 positions; R8 is i, R7 optlen.
func (b *progBuilder) optScanFn() *fn {
	f := newGlobal(b.name(fnOptScan), 1)
	globalPrologue(f)
	done := f.newLabel("done")
	f.emit(
		ld32(asm.R7, asm.R6, stOptLen),
		asm.Mov.Imm(asm.R8, 0),
	)
	for pos := 0; pos < maxOptLen; pos++ {
		next, one := f.newLabel("next"), f.newLabel("one")
		f.emit(
			asm.JNE.Imm(asm.R8, int32(pos), next),
			asm.JLE.Imm(asm.R7, int32(pos), done),
			asm.LoadMem(asm.R1, asm.R6, int16(stOpts+pos), asm.Byte),
		)
		// Set bit kind: word kind>>6, bit kind&63.
		f.emit(
			asm.Mov.Reg(asm.R2, asm.R1),
			asm.And.Imm(asm.R2, 63),
			asm.Mov.Imm(asm.R3, 1),
			asm.LSh.Reg(asm.R3, asm.R2),
			asm.Mov.Reg(asm.R2, asm.R1),
			asm.RSh.Imm(asm.R2, 6),
			asm.LSh.Imm(asm.R2, 3),
			asm.Mov.Reg(asm.R4, asm.R6),
			asm.Add.Reg(asm.R4, asm.R2),
			ld64(asm.R5, asm.R4, stOptBits),
			asm.Or.Reg(asm.R5, asm.R3),
			st64(asm.R4, stOptBits, asm.R5),
			asm.JLT.Imm(asm.R1, 2, one),
			asm.JEq.Imm(asm.R7, int32(pos+1), one),
		)
		if pos+1 < maxOptLen {
			f.emit(
				asm.LoadMem(asm.R2, asm.R6, int16(stOpts+pos+1), asm.Byte),
				asm.JEq.Imm(asm.R2, 0, one),
				asm.Mov.Reg(asm.R8, asm.R2),
				asm.Add.Imm(asm.R8, int32(pos)),
				asm.Ja.Label(next),
			)
		}
		f.label(one)
		f.emit(asm.Mov.Imm(asm.R8, int32(pos+1)))
		f.label(next)
	}
	f.emit(asm.Mov.Imm(asm.R0, 0)) // place for the last label
	f.label(done)
	f.ret(0)
	return f
}
