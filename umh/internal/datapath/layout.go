package datapath

import (
	"unsafe"
)

// The layouts shared with the BPF program are bpf/layout.h's, seen through
// bpf2go's types (datapath_bpfel.go). The constants below are its
// #defines, pinned to it by TestPinnedToLayout.
const (
	// none marks the end of a list and "no entry" (NONE).
	none = 0x7FFFFFFF
	// groupNoPorts marks the bucket of a group's entries whatever their
	// ports (GROUP_NOPORTS, or'ed into class_key.group).
	groupNoPorts = 0x100
	// numHooks is NUM_HOOKS: cfg.hooks has one per netfilter hook.
	numHooks = 5
	// maxOptLen is MAX_OPT_LEN.
	maxOptLen = 40
)

// maxRecords bounds the number of records (entries plus continuation
// records): bpf_loop runs at most 1<<23 iterations, and a walk may visit
// every record once.
const maxRecords = 1<<23 - 2

// Actions of an entry's target (enum action).
const (
	actDrop    = datapathActionACT_DROP // DROP, ERROR
	actAccept  = datapathActionACT_ACCEPT
	actReturn  = datapathActionACT_RETURN
	actJump    = datapathActionACT_JUMP  // push the entry, continue at target
	actGoto    = datapathActionACT_GOTO  // continue at target without a push
	actQueue   = datapathActionACT_QUEUE // QUEUE, NFQUEUE: the target is the verdict
	actCallout = datapathActionACT_CALLOUT
)

// Match kinds (enum kind).
const (
	kindNone      = datapathKindKIND_NONE
	kindPorts     = datapathKindKIND_PORTS
	kindICMP      = datapathKindKIND_ICMP
	kindMultiport = datapathKindKIND_MULTIPORT
	kindIPRange   = datapathKindKIND_IPRANGE
	kindConntrack = datapathKindKIND_CONNTRACK
	kindState     = datapathKindKIND_STATE
	kindCallout   = datapathKindKIND_CALLOUT
)

// The generated types under shorter names.
type (
	record     = datapathRecord
	segVal     = datapathSeg
	grpVal     = datapathGroup
	clsKey     = datapathClassKey
	clsVal     = datapathClassVal
	counterVal = datapathCounter
	config     = datapathConfig
	hookCfg    = datapathHookCfg
	bpfCtx     = datapathBpfilterCtx
)

// setMatch writes one of the match structs (datapathPortsMatch...) into
// the record's match union: its bytes as they are in memory, which are
// the C layout (bpf2go spells out every padding byte, and the programs
// run on the host's byte order). A table of 10,000 rules makes as many
// records; encoding/binary's reflection cost a tenth of a compile.
func setMatch[T any](r *record, m T) {
	n := unsafe.Sizeof(m)
	if n > uintptr(len(r.M.Raw)) {
		panic("datapath: match data does not fit a record")
	}
	copy(r.M.Raw[:], unsafe.Slice((*byte)(unsafe.Pointer(&m)), n))
}

// CtxSize is sizeof(struct bpfilter_ctx) (kmod/progctx.h), untyped for
// comparisons with map info; TestPinnedToProgctx pins it to C and to
// bpf2go's type.
const CtxSize = 104

var _ [CtxSize - unsafe.Sizeof(bpfCtx{})]struct{} // not less
var _ [unsafe.Sizeof(bpfCtx{}) - CtxSize]struct{} // not more
