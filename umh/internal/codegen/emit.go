package codegen

import (
	"fmt"

	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// fn accumulates the instructions of one BPF function (the program or a
// bpf_loop callback), with local labels.
type fn struct {
	name    string
	btf     *btf.Func
	insns   asm.Instructions
	pending string
	n       int
}

var (
	btfLong = &btf.Int{Name: "long", Size: 8, Encoding: btf.Signed}
	btfPtr  = &btf.Pointer{Target: &btf.Void{}}
	// The bpf_loop callbacks: (index, ctx).
	btfProto = &btf.FuncProto{Return: btfLong, Params: []btf.FuncParam{
		{Name: "a", Type: btfLong}, {Name: "b", Type: btfPtr},
	}}
	// The program: (ctx).
	btfMain = &btf.FuncProto{Return: btfLong, Params: []btf.FuncParam{{Name: "ctx", Type: btfPtr}}}
	// The state as global functions see it: stateSize bytes of memory.
	btfState = &btf.Pointer{Target: &btf.Struct{Name: "bpfilter_state", Size: stateSize, Members: []btf.Member{
		{Name: "b", Type: &btf.Array{Index: &btf.Int{Name: "u32", Size: 4}, Type: &btf.Int{Name: "u8", Size: 1}, Nelems: stateSize}},
	}}}
	// Global functions: (state) or (state, n).
	btfGlobal1 = &btf.FuncProto{Return: btfLong, Params: []btf.FuncParam{{Name: "st", Type: btfState}}}
	btfGlobal2 = &btf.FuncProto{Return: btfLong, Params: []btf.FuncParam{{Name: "st", Type: btfState}, {Name: "n", Type: btfLong}}}
)

// newFn starts a static function (the program, a callback).
func newFn(name string, linkage btf.FuncLinkage) *fn {
	return &fn{name: name, btf: &btf.Func{Name: name, Type: btfProto, Linkage: linkage}}
}

// newMain starts the program's function.
func newMain(name string) *fn {
	return &fn{name: name, btf: &btf.Func{Name: name, Type: btfMain, Linkage: btf.GlobalFunc}}
}

// newGlobal starts a global function taking the state (and, with two
// arguments, a number). The verifier checks a global function once, for
// any state, rather than once per caller state: this is what keeps
// verification cheap and independent of the table. It must check the
// state pointer for NULL.
func newGlobal(name string, args int) *fn {
	proto := btfGlobal1
	if args == 2 {
		proto = btfGlobal2
	}
	return &fn{name: name, btf: &btf.Func{Name: name, Type: proto, Linkage: btf.GlobalFunc}}
}

// call emits a call of the function named name (arguments in R1..).
func call(name string) asm.Instruction { return asm.Call.Label(name) }

// newLabel is a label unique in the program (function names prefix it).
func (f *fn) newLabel(hint string) string {
	f.n++
	return fmt.Sprintf("%s.%s%d", f.name, hint, f.n)
}

// label puts l on the next instruction emitted.
func (f *fn) label(l string) {
	if f.pending != "" {
		// Two labels on one place: give the first a no-op of its own.
		f.emit(asm.Ja.Label(l))
	}
	f.pending = l
}

func (f *fn) emit(ins ...asm.Instruction) {
	for _, in := range ins {
		if len(f.insns) == 0 {
			in = btf.WithFuncMetadata(in, f.btf).WithSymbol(f.name)
		} else if f.pending != "" {
			in = in.WithSymbol(f.pending)
			f.pending = ""
		}
		f.insns = append(f.insns, in)
	}
}

func (f *fn) done() asm.Instructions {
	if f.pending != "" {
		panic("codegen: label " + f.pending + " at the end of " + f.name)
	}
	return f.insns
}

// Helpers for common instructions.

func ld32(dst, base asm.Register, off int) asm.Instruction {
	return asm.LoadMem(dst, base, int16(off), asm.Word)
}

func ld64(dst, base asm.Register, off int) asm.Instruction {
	return asm.LoadMem(dst, base, int16(off), asm.DWord)
}

func st32(base asm.Register, off int, src asm.Register) asm.Instruction {
	return asm.StoreMem(base, int16(off), src, asm.Word)
}

func st64(base asm.Register, off int, src asm.Register) asm.Instruction {
	return asm.StoreMem(base, int16(off), src, asm.DWord)
}

func st32imm(base asm.Register, off int, v int32) asm.Instruction {
	return asm.StoreImm(base, int16(off), int64(v), asm.Word)
}

// st64imm is BPF_ST | BPF_MEM | BPF_DW, which asm.StoreImm refuses.
func st64imm(base asm.Register, off int, v int32) asm.Instruction {
	return asm.Instruction{OpCode: asm.StoreImmOp(asm.DWord), Dst: base, Offset: int16(off), Constant: int64(v)}
}

// fnPtr loads the address of a function (a bpf_loop callback).
func fnPtr(dst asm.Register, name string) asm.Instruction {
	return asm.Instruction{OpCode: asm.LoadImmOp(asm.DWord), Dst: dst, Src: asm.PseudoFunc, Constant: -1}.WithReference(name)
}

// mapPtr loads the map named name.
func mapPtr(dst asm.Register, name string) asm.Instruction {
	return asm.LoadMapPtr(dst, 0).WithReference(name)
}

// lookup emits bpf_map_lookup_elem(map, fp+keyOff); R0 is the value or 0.
func (f *fn) lookup(mapName string, keyOff int) {
	f.emit(
		mapPtr(asm.R1, mapName),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(keyOff)),
		asm.FnMapLookupElem.Call(),
	)
}

// loop emits bpf_loop(n, callback, ctx, 0); ctx is in register ctx.
func (f *fn) loop(n int, callback string, ctx asm.Register) {
	f.emit(
		asm.Mov.Reg(asm.R3, ctx),
		asm.Mov.Imm(asm.R1, int32(n)),
		fnPtr(asm.R2, callback),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnLoop.Call(),
	)
}

// ret emits return v.
func (f *fn) ret(v int32) {
	f.emit(asm.Mov.Imm(asm.R0, v), asm.Return())
}

// invCheck emits NF_INVF: cond jumps to its argument when the mismatch m
// holds and falls through otherwise; the rule fails (jump to fail) when
// m XOR (inv & bit). inv must survive cond.
func (f *fn) invCheck(cond func(mTrue string), inv asm.Register, bit int32, fail string) {
	mTrue, ok := f.newLabel("m"), f.newLabel("ok")
	cond(mTrue)
	f.emit(asm.JSet.Imm(inv, bit, fail), asm.Ja.Label(ok))
	f.label(mTrue)
	f.emit(asm.JSet.Imm(inv, bit, ok), asm.Ja.Label(fail))
	f.label(ok)
}
