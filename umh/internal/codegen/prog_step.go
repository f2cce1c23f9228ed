package codegen

import (
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// The functions of a program besides main (names prefixed per program).
// The bpf_loop callbacks are static and tiny: they only call bpf_loop and
// global functions, and branch only on what those return. The work is in
// the global functions, which see the state as opaque memory.
const (
	fnStep       = "step"        // callback: one ipt_do_table iteration
	fnGroup      = "group"       // callback: search one group's bucket
	fnWalk       = "walk"        // callback: one record
	fnStepBegin  = "step_begin"  // global: set up the search from stPos
	fnStepList   = "step_list"   // global: set up the walk of the linear list
	fnStepEnd    = "step_end"    // global: count, apply the target
	fnGroupBegin = "group_begin" // global: look up the group's bucket
	fnWalkOne    = "walk_one"    // global: evaluate one record
)

// What step_begin and group_begin return.
const (
	beginStop   = 0 // verdict set (step) / nothing to search (group)
	beginWalk   = 1 // walk (linear, or the list or bucket set up)
	beginGroups = 2 // step: search the groups first
	groupBest   = 2 // group: nothing can beat the best entry found
)

// A callback frame: a map key.
const (
	cbKey      = -8
	cbClassKey = -8 - keySize - 8
)

func (b *progBuilder) walkBound() int { return b.facts.numRecords + 1 }

// stepFn is the step callback.
func (b *progBuilder) stepFn() *fn {
	f := newFn(b.name(fnStep), btf.StaticFunc)
	stop, walk := f.newLabel("stop"), f.newLabel("walk")
	f.emit(
		asm.Mov.Reg(asm.R6, asm.R2),
		asm.Mov.Reg(asm.R1, asm.R6),
		call(b.name(fnStepBegin)),
		asm.JEq.Imm(asm.R0, beginStop, stop),
		asm.JEq.Imm(asm.R0, beginWalk, walk),
	)
	if b.groups() {
		f.loop(b.facts.numGroups, b.name(fnGroup), asm.R6)
		f.emit(asm.Mov.Reg(asm.R1, asm.R6), call(b.name(fnStepList)))
	}
	f.label(walk)
	f.loop(b.walkBound(), b.name(fnWalk), asm.R6)
	f.emit(
		asm.Mov.Reg(asm.R1, asm.R6),
		call(b.name(fnStepEnd)),
		asm.And.Imm(asm.R0, 1),
		asm.Return(),
	)
	f.label(stop)
	f.ret(1)
	return f
}

// groupFn is the group callback.
func (b *progBuilder) groupFn() *fn {
	f := newFn(b.name(fnGroup), btf.StaticFunc)
	ret0, ret1 := f.newLabel("ret0"), f.newLabel("ret1")
	f.emit(
		asm.Mov.Reg(asm.R6, asm.R2),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.Mov.Reg(asm.R1, asm.R6),
		call(b.name(fnGroupBegin)),
		asm.JEq.Imm(asm.R0, beginStop, ret0),
		asm.JEq.Imm(asm.R0, groupBest, ret1),
	)
	f.loop(b.walkBound(), b.name(fnWalk), asm.R6)
	f.label(ret0)
	f.ret(0)
	f.label(ret1)
	f.ret(1)
	return f
}

// walkFn is the walk callback.
func (b *progBuilder) walkFn() *fn {
	f := newFn(b.name(fnWalk), btf.StaticFunc)
	f.emit(
		asm.Mov.Reg(asm.R1, asm.R2),
		call(b.name(fnWalkOne)),
		asm.And.Imm(asm.R0, 1),
		asm.Return(),
	)
	return f
}

// globalPrologue: R6 = state, or return 0 for NULL.
func globalPrologue(f *fn) {
	ok := f.newLabel("nonnull")
	f.emit(asm.JNE.Imm(asm.R1, 0, ok))
	f.ret(0)
	f.label(ok)
	f.emit(asm.Mov.Reg(asm.R6, asm.R1))
}

// stepBeginFn prepares the search for the first entry at or after stPos
// that matches: linear (to the end of the table), or by classification
// within stPos's segment.
func (b *progBuilder) stepBeginFn() *fn {
	f := newGlobal(b.name(fnStepBegin), 1)
	globalPrologue(f)
	drop, linear := f.newLabel("drop"), f.newLabel("linear")
	f.emit(
		ld32(asm.R7, asm.R6, stPos),
		asm.JGE.Imm(asm.R7, int32(b.facts.numEntries), drop), // off the end
		st32imm(asm.R6, stWBest, none),
	)
	if !b.linear {
		f.emit(
			ld32(asm.R1, asm.R6, stSlow),
			asm.JNE.Imm(asm.R1, 0, linear),
			st32(asm.RFP, cbKey, asm.R7),
		)
		f.lookup(mapRules, cbKey)
		f.emit(
			asm.JEq.Imm(asm.R0, 0, drop),
			ld32(asm.R1, asm.R0, recSeg),
			st32(asm.R6, stSeg, asm.R1),
			st32(asm.RFP, cbKey, asm.R1),
		)
		f.lookup(mapSegs, cbKey)
		f.emit(
			asm.JEq.Imm(asm.R0, 0, drop),
			ld32(asm.R1, asm.R0, segEnd),
			st32(asm.R6, stSegEnd, asm.R1),
			st32(asm.R6, stWEnd, asm.R1),
			ld32(asm.R1, asm.R0, segGHead),
			st32(asm.R6, stGHead, asm.R1),
			st32(asm.R6, stWC, asm.R1),
			st32(asm.R6, stWR, asm.R1),
			ld32(asm.R1, asm.R0, segGPos),
			st32(asm.R6, stGPos, asm.R1),
			st32(asm.R6, stWL, asm.R1),
			st32imm(asm.R6, stWLinear, 0),
			ld64(asm.R1, asm.R0, segGMask),
			st64(asm.R6, stGMask, asm.R1),
		)
		if b.groups() {
			list := f.newLabel("list")
			f.emit(asm.JEq.Imm(asm.R1, 0, list))
			f.ret(beginGroups)
			f.label(list)
		}
		f.ret(beginWalk)
	}
	f.label(linear)
	f.emit(
		st32(asm.R6, stWC, asm.R7),
		st32(asm.R6, stWR, asm.R7),
		st32imm(asm.R6, stWEnd, int32(b.facts.numEntries-1)),
		st32imm(asm.R6, stWLinear, 1),
	)
	f.ret(beginWalk)
	f.label(drop)
	f.emit(st32imm(asm.R6, stVerdict, b.pt.drop))
	f.ret(beginStop)
	return f
}

// stepListFn sets the walk on the segment's linear list, after the
// groups (the walk stops at the best entry they found).
func (b *progBuilder) stepListFn() *fn {
	f := newGlobal(b.name(fnStepList), 1)
	globalPrologue(f)
	f.emit(
		ld32(asm.R1, asm.R6, stGHead),
		st32(asm.R6, stWC, asm.R1),
		st32(asm.R6, stWR, asm.R1),
		ld32(asm.R1, asm.R6, stGPos),
		st32(asm.R6, stWL, asm.R1),
	)
	f.ret(0)
	return f
}

// stepEndFn takes the search's result: the matched entry is counted and
// its target applied; nothing matched in the segment moves on to the next
// one, as ipt_do_table walks on past a chain's end. Returns 1 once the
// verdict is set.
func (b *progBuilder) stepEndFn() *fn {
	f := newGlobal(b.name(fnStepEnd), 1)
	globalPrologue(f)
	drop, matched := f.newLabel("drop"), f.newLabel("matched")
	f.emit(
		ld32(asm.R1, asm.R6, stHotdrop),
		asm.JNE.Imm(asm.R1, 0, drop),
		ld32(asm.R8, asm.R6, stWBest),
		asm.JNE.Imm(asm.R8, none, matched),
		ld32(asm.R1, asm.R6, stWLinear),
		asm.JNE.Imm(asm.R1, 0, drop), // a linear walk reaches the end
		ld32(asm.R1, asm.R6, stSegEnd),
		asm.Add.Imm(asm.R1, 1),
		st32(asm.R6, stPos, asm.R1),
	)
	f.ret(0)
	f.label(matched)
	b.count(f)
	b.target(f, drop)
	return f
}

// count is ADD_COUNTER(*counter, skb->len, 1) for entry R8.
func (b *progBuilder) count(f *fn) {
	skip := f.newLabel("nocount")
	f.emit(st32(asm.RFP, cbKey, asm.R8))
	f.lookup(mapCounters, cbKey)
	f.emit(
		asm.JEq.Imm(asm.R0, 0, skip),
		ld64(asm.R1, asm.R0, cntPackets),
		asm.Add.Imm(asm.R1, 1),
		st64(asm.R0, cntPackets, asm.R1),
		ld64(asm.R1, asm.R0, cntBytes),
		ld32(asm.R2, asm.R6, stLen),
		asm.Add.Reg(asm.R1, asm.R2),
		st64(asm.R0, cntBytes, asm.R1),
	)
	f.label(skip)
	f.emit(asm.Mov.Imm(asm.R0, 0))
}

// target applies the target of entry R8 (stAction, stTarget).
func (b *progBuilder) target(f *fn, drop string) {
	accept, ret, pop := f.newLabel("accept"), f.newLabel("return"), f.newLabel("pop")
	jump, gotoL, queue := f.newLabel("jump"), f.newLabel("goto"), f.newLabel("queue")
	f.emit(
		ld32(asm.R1, asm.R6, stAction),
		asm.JEq.Imm(asm.R1, actAccept, accept),
		asm.JEq.Imm(asm.R1, actQueue, queue),
		asm.JEq.Imm(asm.R1, actReturn, ret),
		asm.JEq.Imm(asm.R1, actJump, jump),
		asm.JEq.Imm(asm.R1, actGoto, gotoL),
	)
	f.label(drop)
	f.emit(st32imm(asm.R6, stVerdict, b.pt.drop))
	f.ret(1)
	f.label(accept)
	f.emit(st32imm(asm.R6, stVerdict, b.pt.accept))
	f.ret(1)
	f.label(queue)
	f.emit(
		ld32(asm.R1, asm.R6, stTarget),
		st32(asm.R6, stVerdict, asm.R1),
	)
	f.ret(1)

	// RETURN: pop, or the hook's underflow on an empty stack.
	f.label(ret)
	f.emit(
		ld32(asm.R1, asm.R6, stSP),
		asm.JNE.Imm(asm.R1, 0, pop),
		st32imm(asm.R6, stPos, int32(b.under)),
	)
	f.ret(0)
	f.label(pop)
	b.jumpStack(f, drop)
	f.emit(
		ld32(asm.R1, asm.R6, stSP),
		asm.JEq.Imm(asm.R1, 0, drop),
		asm.Sub.Imm(asm.R1, 1),
		asm.JGE.Imm(asm.R1, int32(b.facts.stackCap), drop),
		st32(asm.R6, stSP, asm.R1),
		asm.LSh.Imm(asm.R1, 2),
		asm.Add.Reg(asm.R0, asm.R1),
		ld32(asm.R2, asm.R0, 0),
		asm.Add.Imm(asm.R2, 1),
		st32(asm.R6, stPos, asm.R2),
	)
	f.ret(0)

	// A jump that pushes: the stack holds at most stacksize entries.
	f.label(jump)
	f.emit(
		ld32(asm.R1, asm.R6, stSP),
		asm.JGE.Imm(asm.R1, int32(b.facts.stackSize), drop),
	)
	b.jumpStack(f, drop)
	f.emit(
		ld32(asm.R1, asm.R6, stSP),
		asm.JGE.Imm(asm.R1, int32(b.facts.stackCap), drop),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.Add.Imm(asm.R2, 1),
		st32(asm.R6, stSP, asm.R2),
		asm.LSh.Imm(asm.R1, 2),
		asm.Add.Reg(asm.R0, asm.R1),
		st32(asm.R0, 0, asm.R8),
	)
	f.label(gotoL)
	f.emit(
		ld32(asm.R1, asm.R6, stTarget),
		st32(asm.R6, stPos, asm.R1),
	)
	f.ret(0)
}

// jumpStack sets R0 to this CPU's jump stack (the jstack map, one value
// per CPU: programs do not nest on a CPU).
func (b *progBuilder) jumpStack(f *fn, fail string) {
	f.emit(
		asm.FnGetSmpProcessorId.Call(),
		st32(asm.RFP, cbKey, asm.R0),
	)
	f.lookup(mapJStack, cbKey)
	f.emit(asm.JEq.Imm(asm.R0, 0, fail))
}

// groupBeginFn sets the walk on the packet's bucket of group R2: the key
// under the group's masks, looked up in the classes map.
func (b *progBuilder) groupBeginFn() *fn {
	f := newGlobal(b.name(fnGroupBegin), 2)
	globalPrologue(f)
	skip, best := f.newLabel("skip"), f.newLabel("best")
	k := cbClassKey
	f.emit(
		asm.Mov.Reg(asm.R7, asm.R2),
		asm.JGE.Imm(asm.R7, maxGroups, skip),
		ld64(asm.R1, asm.R6, stGMask),
		asm.RSh.Reg(asm.R1, asm.R7),
		asm.And.Imm(asm.R1, 1),
		asm.JEq.Imm(asm.R1, 0, skip),
		// Nothing can beat an entry at stPos.
		ld32(asm.R1, asm.R6, stWBest),
		ld32(asm.R2, asm.R6, stPos),
		asm.JEq.Reg(asm.R1, asm.R2, best),
		ld32(asm.R1, asm.R6, stHotdrop),
		asm.JNE.Imm(asm.R1, 0, best),
		st32(asm.RFP, cbKey, asm.R7),
	)
	f.lookup(mapGroups, cbKey)
	f.emit(
		asm.JEq.Imm(asm.R0, 0, skip),
		st32(asm.RFP, k+keyGroup, asm.R7),
		ld32(asm.R1, asm.R6, stSeg),
		st32(asm.RFP, k+keySeg, asm.R1),
	)
	// Each field under the group's mask; a field that differs from the
	// group's keys where they all agree has no bucket.
	field := func(x, keyOff, grpMask int) {
		f.emit(
			ld32(asm.R2, asm.R0, grpMask),
			asm.And.Reg(asm.R1, asm.R2),
			st32(asm.RFP, k+keyOff, asm.R1),
			ld32(asm.R2, asm.R0, grpAMask+4*x),
			asm.And.Reg(asm.R1, asm.R2),
			ld32(asm.R2, asm.R0, grpAVal+4*x),
			asm.JNE.Reg(asm.R1, asm.R2, skip),
		)
	}
	f.emit(ld32(asm.R1, asm.R6, stProto))
	field(2, keyProto, grpPmask)
	f.emit(ld32(asm.R1, asm.R6, stSaddr))
	field(0, keySaddr, grpSmask)
	f.emit(ld32(asm.R1, asm.R6, stDaddr))
	field(1, keyDaddr, grpDmask)
	f.emit(
		ld32(asm.R1, asm.R6, stSport),
		ld32(asm.R2, asm.R0, grpSpmask),
		asm.And.Reg(asm.R1, asm.R2),
		asm.LSh.Imm(asm.R1, 16),
		ld32(asm.R3, asm.R6, stDport),
		ld32(asm.R2, asm.R0, grpDpmask),
		asm.And.Reg(asm.R3, asm.R2),
		asm.Or.Reg(asm.R1, asm.R3),
		st32(asm.RFP, k+keyPorts, asm.R1),
		ld32(asm.R2, asm.R0, grpAMask+12),
		asm.And.Reg(asm.R1, asm.R2),
		ld32(asm.R2, asm.R0, grpAVal+12),
		asm.JNE.Reg(asm.R1, asm.R2, skip),
	)
	f.lookup(mapClasses, k)
	f.emit(
		asm.JEq.Imm(asm.R0, 0, skip),
		ld32(asm.R1, asm.R0, clsFirst),
		st32(asm.R6, stWC, asm.R1),
		st32(asm.R6, stWR, asm.R1),
		ld32(asm.R1, asm.R0, clsPos),
		st32(asm.R6, stWL, asm.R1),
	)
	f.ret(beginWalk)
	f.label(skip)
	f.ret(beginStop)
	f.label(best)
	f.ret(groupBest)
	return f
}
