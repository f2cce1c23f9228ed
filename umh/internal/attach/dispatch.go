package attach

import (
	"fmt"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Slots of a generation in the prog array: the program of each hook.
const (
	slotInput   = 0
	slotForward = 1
	slotOutput  = 2
	slotsPerGen = 4
	generations = 2
)

// hookSlots maps the hooks the dispatchers serve to their slots.
var hookSlots = []struct{ hook, slot int }{
	{ipt.HookLocalIn, slotInput},
	{ipt.HookForward, slotForward},
	{ipt.HookLocalOut, slotOutput},
}

// __sk_buff offsets (include/uapi/linux/bpf.h).
const (
	skbPktType        = 4
	skbProtocol       = 16
	skbIngressIfindex = 36
	skbIfindex        = 40
)

const (
	ethPIP           = 0x0800
	packetOtherhost  = 3 // PACKET_OTHERHOST
	hdrStartNet      = 1 // BPF_HDR_START_NET
	afInet           = 2
	tcActOK          = 0
	fibRetNotFwded   = 4 // BPF_FIB_LKUP_RET_NOT_FWDED
	fibRetFwdDisable = 5 // BPF_FIB_LKUP_RET_FWD_DISABLED
	fibParamsSize    = 64
)

// Stack layout of the dispatchers (offsets from the frame pointer).
const (
	stFib  = -64 // struct bpf_fib_lookup, 64 bytes
	stIPH  = -88 // the IPv4 header, 20 bytes
	stKey  = -92 // u32 key 0 of the generation map
	fibL4  = 1   // bpf_fib_lookup.l4_protocol
	fibIfx = 8   // .ifindex
	fibTos = 12  // .tos
	fibSrc = 16  // .ipv4_src
	fibDst = 32  // .ipv4_dst
)

// Map names in the dispatchers' collection.
const (
	mapProgs = "bpfilter_progs"
	mapGen   = "bpfilter_gen"
	progIn   = "bpfilter_ingress"
	progOut  = "bpfilter_egress"
)

// dispatchSpec is the collection attached once per interface: the two
// dispatchers, the prog array of two generations of hook programs, and the
// one-element array naming the current generation.
func dispatchSpec() *ebpf.CollectionSpec {
	return &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			mapProgs: {Name: mapProgs, Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4,
				MaxEntries: generations * slotsPerGen},
			mapGen: {Name: mapGen, Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1},
		},
		Programs: map[string]*ebpf.ProgramSpec{
			progIn: {Name: progIn, Type: ebpf.SchedCLS, License: "GPL",
				Instructions: ingressInsns()},
			progOut: {Name: progOut, Type: ebpf.SchedCLS, License: "GPL",
				Instructions: egressInsns()},
		},
	}
}

// tailCall jumps to the program of the hook whose slot is in R7 in the
// current generation: progs[gen*slotsPerGen + R7]. R6 holds the context.
// An empty slot falls through to "pass".
func tailCall() asm.Instructions {
	return asm.Instructions{
		asm.StoreImm(asm.RFP, stKey, 0, asm.Word).WithSymbol("tail"),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapGen),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R3, asm.R0, 0, asm.Word),
		asm.Mul.Imm(asm.R3, slotsPerGen),
		asm.Add.Reg(asm.R3, asm.R7),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, 0).WithReference(mapProgs),
		asm.FnTailCall.Call(),
		asm.Mov.Imm(asm.R0, tcActOK).WithSymbol("pass"),
		asm.Return(),
	}
}

// ingressInsns is the ingress dispatcher. An IPv4 packet for this host
// goes to INPUT: bpf_fib_lookup (with the FIB rules, so the local table
// counts) answers NOT_FWDED for local, broadcast and multicast routes, and
// FWD_DISABLED when the device does not forward, in which case the stack
// can only deliver the packet locally or drop it. Anything else is routed
// on (FORWARD, judged at egress where codegen's ForwardTC expects it) or
// dropped by the stack: passed here. Packets for another host's MAC
// (PACKET_OTHERHOST) never reach ip_rcv's routing: passed.
func ingressInsns() asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R1, asm.R6, skbProtocol, asm.Word),
		asm.JNE.Imm(asm.R1, int32(ethPIP>>8|(ethPIP&0xFF)<<8), "pass"),
		asm.LoadMem(asm.R1, asm.R6, skbPktType, asm.Word),
		asm.JEq.Imm(asm.R1, packetOtherhost, "pass"),
		// The IPv4 header.
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stIPH),
		asm.Mov.Imm(asm.R4, 20),
		asm.Mov.Imm(asm.R5, hdrStartNet),
		asm.FnSkbLoadBytesRelative.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"), // codegen would not examine it either
	}
	insns = append(insns, asm.Mov.Imm(asm.R1, 0))
	for off := int16(0); off < fibParamsSize; off += 8 {
		insns = append(insns, asm.StoreMem(asm.RFP, stFib+off, asm.R1, asm.DWord))
	}
	insns = append(insns,
		asm.StoreImm(asm.RFP, stFib, afInet, asm.Byte),
		asm.LoadMem(asm.R1, asm.RFP, stIPH+9, asm.Byte),
		asm.StoreMem(asm.RFP, stFib+fibL4, asm.R1, asm.Byte),
		asm.LoadMem(asm.R1, asm.RFP, stIPH+1, asm.Byte),
		asm.StoreMem(asm.RFP, stFib+fibTos, asm.R1, asm.Byte),
		asm.LoadMem(asm.R1, asm.R6, skbIfindex, asm.Word),
		asm.StoreMem(asm.RFP, stFib+fibIfx, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.RFP, stIPH+12, asm.Word),
		asm.StoreMem(asm.RFP, stFib+fibSrc, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.RFP, stIPH+16, asm.Word),
		asm.StoreMem(asm.RFP, stFib+fibDst, asm.R1, asm.Word),
		// tot_len stays 0: no MTU check of ours.
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stFib),
		asm.Mov.Imm(asm.R3, fibParamsSize),
		asm.Mov.Imm(asm.R4, 0), // not DIRECT: the FIB rules and the local table
		asm.FnFibLookup.Call(),
		asm.Mov.Imm(asm.R7, slotInput),
		asm.JEq.Imm(asm.R0, fibRetNotFwded, "tail"),
		asm.JEq.Imm(asm.R0, fibRetFwdDisable, "tail"),
		asm.Ja.Label("pass"),
	)
	return append(insns, tailCall()...)
}

// egressInsns is the egress dispatcher: a packet that did not come in on
// a device (__sk_buff.ingress_ifindex, skb->skb_iif, is 0) was made here:
// OUTPUT. One that came in on a device and leaves again was forwarded:
// FORWARD.
func egressInsns() asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R1, asm.R6, skbProtocol, asm.Word),
		asm.JNE.Imm(asm.R1, int32(ethPIP>>8|(ethPIP&0xFF)<<8), "pass"),
		asm.Mov.Imm(asm.R7, slotOutput),
		asm.LoadMem(asm.R1, asm.R6, skbIngressIfindex, asm.Word),
		asm.JEq.Imm(asm.R1, 0, "tail"),
		asm.Mov.Imm(asm.R7, slotForward),
		asm.Ja.Label("tail"),
	}
	return append(insns, tailCall()...)
}

// dispatch is the loaded dispatchers' collection.
type dispatch struct {
	coll    *ebpf.Collection
	ingress *ebpf.Program
	egress  *ebpf.Program
	progs   *ebpf.Map
	gen     *ebpf.Map
}

func loadDispatch() (*dispatch, error) {
	coll, err := ebpf.NewCollection(dispatchSpec())
	if err != nil {
		return nil, fmt.Errorf("attach: load dispatchers: %w", err)
	}
	return &dispatch{coll: coll, ingress: coll.Programs[progIn], egress: coll.Programs[progOut],
		progs: coll.Maps[mapProgs], gen: coll.Maps[mapGen]}, nil
}

func (d *dispatch) close() {
	if d.coll != nil {
		d.coll.Close()
		return
	}
	// Adopted: no collection owns them.
	for _, p := range []*ebpf.Program{d.ingress, d.egress} {
		if p != nil {
			p.Close()
		}
	}
	for _, m := range []*ebpf.Map{d.progs, d.gen} {
		if m != nil {
			m.Close()
		}
	}
}
