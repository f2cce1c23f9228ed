package codegen

import (
	"fmt"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/cilium/ebpf"
)

// Map names in the collection.
const (
	mapRules    = "rules"
	mapClasses  = "classes"
	mapSegs     = "segs"
	mapGroups   = "groups"
	mapLists    = "lists"
	mapCounters = "counters"
	mapCtx      = "ctx"
	mapJStack   = "jstack"
)

// MapCtx is the name of the per-CPU array (key 0: struct bpfilter_ctx,
// kmod/progctx.h) that the module fills before each run and the programs
// read. Every collection has one; the module takes its fd with the
// programs.
const MapCtx = mapCtx

// Hook is a builtin chain to compile, and which interfaces its hook has:
// ip_tables passes state->in and state->out, so INPUT has an input
// interface only, OUTPUT an output one only, FORWARD both; a missing one
// has the empty name, as ip_tables' nulldevname.
type Hook struct {
	Hook    int // ipt.HookLocalIn, ...
	In, Out bool
}

// Input is NF_INET_LOCAL_IN.
func Input() Hook { return Hook{Hook: ipt.HookLocalIn, In: true} }

// Forward is NF_INET_FORWARD.
func Forward() Hook { return Hook{Hook: ipt.HookForward, In: true, Out: true} }

// Output is NF_INET_LOCAL_OUT.
func Output() Hook { return Hook{Hook: ipt.HookLocalOut, Out: true} }

// Hooks are the hooks of the filter table.
func Hooks() []Hook { return []Hook{Input(), Forward(), Output()} }

// ProgramName is the name of a hook's program in the collection.
func ProgramName(hook int) string {
	switch hook {
	case ipt.HookPreRouting:
		return "ipt_prerouting"
	case ipt.HookLocalIn:
		return "ipt_input"
	case ipt.HookForward:
		return "ipt_forward"
	case ipt.HookLocalOut:
		return "ipt_output"
	case ipt.HookPostRouting:
		return "ipt_postrouting"
	}
	return fmt.Sprintf("ipt_hook%d", hook)
}

// Options tune Compile.
type Options struct {
	// Hooks are the programs to build; nil means Input, Forward and
	// Output for those of them that the table has.
	Hooks []Hook
	// Linear turns classification off: every packet walks the entries one
	// by one, as ipt_do_table does. For comparison and tests.
	Linear bool
}

// Stats describe a compiled table.
type Stats struct {
	Entries  int // entries of the table
	Records  int // records (entries plus continuation records)
	Segments int
	Groups   int // shapes with buckets
	Buckets  int // keys in the classes map
	Linear   int // entries on linear lists
	// MaxBucket is the longest bucket: the worst number of candidates a
	// group search checks.
	MaxBucket int
}

// Spec is a compiled table: a collection of one program per hook sharing
// the maps, ready to load. The maps' specs have no Contents: Load fills
// them (fills) with one batch update per map.
type Spec struct {
	Collection *ebpf.CollectionSpec
	Hooks      []Hook
	Stats      Stats
	fills      map[string]mapFill
}

// Compile compiles a validated table into BPF. Every match and target that
// package ipt accepts is compiled; ErrUnsupported is left for what a
// validated table cannot hold (other targets, verdicts, too many records).
func Compile(t *ipt.Table, opts Options) (*Spec, error) {
	n := len(t.Entries)
	if n == 0 {
		return nil, fmt.Errorf("codegen: table %q has no entries", t.Name)
	}
	hooks := opts.Hooks
	if hooks == nil {
		for _, h := range Hooks() {
			if t.ValidHooks&(1<<h.Hook) != 0 {
				hooks = append(hooks, h)
			}
		}
	}
	cl := classify(t, opts.Linear)
	recs := make([][]byte, n, n+n/4)
	facts := progFacts{numEntries: n, stackSize: t.StackSize, numGroups: len(cl.groups)}
	pushes := 0
	actions, targets := make([]uint32, n), make([]uint32, n)
	for i, e := range t.Entries {
		er, err := encodeEntry(t, e)
		if err != nil {
			return nil, fmt.Errorf("codegen: table %q: %w", t.Name, err)
		}
		actions[i], targets[i] = er.action, er.target
		if er.action == actJump {
			pushes++
		}
		facts.needIn = facts.needIn || e.IP.InIfaceMask != [ipt.IfNameSize]byte{}
		facts.needOut = facts.needOut || e.IP.OutIfaceMask != [ipt.IfNameSize]byte{}
		for _, m := range e.Matches {
			if x, ok := m.Info.(*ipt.TCP); ok && x.Option != 0 {
				facts.tcpOpts = true
			}
			switch m.Info.(type) {
			case *ipt.TCP, *ipt.UDP, *ipt.ICMP, *ipt.Multiport:
				facts.needL4 = true
			}
		}
		for k, r := range er.recs {
			putU32(r, recCont, none)
			putU32(r, recAction, er.action)
			putU32(r, recTarget, er.target)
			putU32(r, recSeg, cl.segOf[i])
			if k == 0 {
				recs[i] = r
				continue
			}
			putU32(er.recs[k-1], recCont, uint32(len(recs)))
			recs = append(recs, r)
		}
		if len(recs) > maxRecords {
			return nil, fmt.Errorf("codegen: table %q: more than %d records: %w", t.Name, maxRecords, ErrUnsupported)
		}
	}
	facts.numRecords = len(recs)
	facts.stackCap = max(1, min(t.StackSize, pushes))

	maps, fills := buildMaps(cl, recs, facts)
	spec := &ebpf.CollectionSpec{Maps: maps, Programs: map[string]*ebpf.ProgramSpec{}}
	for _, h := range hooks {
		if h.Hook < 0 || h.Hook >= ipt.NumHooks || t.ValidHooks&(1<<h.Hook) == 0 {
			return nil, fmt.Errorf("codegen: table %q has no hook %d", t.Name, h.Hook)
		}
		start, under := t.EntryAt(t.HookEntry[h.Hook]), t.EntryAt(t.Underflow[h.Hook])
		if start == nil || under == nil {
			return nil, fmt.Errorf("codegen: table %q: hook %s has no entry", t.Name, ipt.HookNames[h.Hook])
		}
		name := ProgramName(h.Hook)
		pb := &progBuilder{pt: nfType, hook: h, facts: facts, linear: opts.Linear,
			start: start.Index, under: under.Index, prefix: name}
		if a := actions[start.Index]; unconditional(start) && (a == actAccept || a == actDrop || a == actQueue) {
			pb.first, pb.verdict = true, int32(targets[start.Index])
			switch a {
			case actAccept:
				pb.verdict = pb.pt.accept
			case actDrop:
				pb.verdict = pb.pt.drop
			}
		}
		spec.Programs[name] = &ebpf.ProgramSpec{
			Name:         name,
			Type:         pb.pt.typ,
			Instructions: pb.instructions(),
			License:      "GPL",
		}
	}
	st := Stats{Entries: n, Records: len(recs), Segments: len(cl.segEnds), Groups: len(cl.groups),
		Buckets: len(cl.heads), Linear: cl.linear}
	for _, c := range cl.bucketN {
		st.MaxBucket = max(st.MaxBucket, c)
	}
	return &Spec{Collection: spec, Hooks: hooks, Stats: st, fills: fills}, nil
}

// unconditional: e matches every packet (ip_tables' unconditional(): an
// all-zero ipt_ip, and no match other than comments).
func unconditional(e *ipt.Entry) bool {
	if e.IP != (ipt.IP{}) {
		return false
	}
	for _, m := range e.Matches {
		if _, ok := m.Info.(*ipt.Comment); !ok {
			return false
		}
	}
	return true
}

// CtxSpec is the ctx map: what the module requires (value_size
// sizeof(struct bpfilter_ctx), max_entries >= 1).
func CtxSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{Name: mapCtx, Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: CtxSize, MaxEntries: 1}
}

// The maps' contents: one batch of keys and values per map (typed slices
// of fixed-size arrays, so that Map.BatchUpdate sees one element per
// index), written by Load with one BPF_MAP_UPDATE_BATCH each, not one
// update per element as MapSpec.Contents would be.
type (
	recVal  [recordSize]byte
	segVal  [segSize]byte
	grpVal  [grpSize]byte
	clsKey  [keySize]byte
	clsVal  [clsSize]byte
	mapFill struct {
		keys, values any
		n            int
	}
)

func indices(n int) []uint32 {
	k := make([]uint32, n)
	for i := range k {
		k[i] = uint32(i)
	}
	return k
}

func buildMaps(cl *classification, recs [][]byte, facts progFacts) (map[string]*ebpf.MapSpec, map[string]mapFill) {
	fills := map[string]mapFill{}
	rules := &ebpf.MapSpec{Name: mapRules, Type: ebpf.Array, KeySize: 4, ValueSize: recordSize,
		MaxEntries: uint32(len(recs))}
	rv := make([]recVal, len(recs))
	for i, r := range recs {
		copy(rv[i][:], r)
	}
	fills[mapRules] = mapFill{indices(len(rv)), rv, len(rv)}
	segs := &ebpf.MapSpec{Name: mapSegs, Type: ebpf.Array, KeySize: 4, ValueSize: segSize,
		MaxEntries: uint32(len(cl.segEnds))}
	sv := make([]segVal, len(cl.segEnds))
	for s, end := range cl.segEnds {
		v := sv[s][:]
		putU32(v, segEnd, end)
		putU32(v, segGHead, cl.listFirst(cl.ghead[s]))
		putU64(v, segGMask, cl.gmask[s])
		putU32(v, segGPos, cl.ghead[s])
	}
	fills[mapSegs] = mapFill{indices(len(sv)), sv, len(sv)}
	groups := &ebpf.MapSpec{Name: mapGroups, Type: ebpf.Array, KeySize: 4, ValueSize: grpSize,
		MaxEntries: uint32(max(1, len(cl.groups)))}
	gv := make([]grpVal, len(cl.groups))
	for g, s := range cl.groups {
		v := gv[g][:]
		putU32(v, grpSmask, s.smask)
		putU32(v, grpDmask, s.dmask)
		putU32(v, grpPmask, s.pmask)
		putU32(v, grpSpmask, s.spmask)
		putU32(v, grpDpmask, s.dpmask)
		for x := range s.agreeMask {
			putU32(v, grpAMask+4*x, s.agreeMask[x])
			putU32(v, grpAVal+4*x, s.agreeVal[x])
		}
	}
	fills[mapGroups] = mapFill{indices(len(gv)), gv, len(gv)}
	classes := &ebpf.MapSpec{Name: mapClasses, Type: ebpf.Hash, KeySize: keySize, ValueSize: clsSize,
		MaxEntries: uint32(max(1, len(cl.heads)))}
	ck, cv := make([]clsKey, 0, len(cl.heads)), make([]clsVal, 0, len(cl.heads))
	for k, pos := range cl.heads {
		var v clsVal
		putU32(v[:], clsFirst, cl.lists[pos])
		putU32(v[:], clsPos, pos)
		ck = append(ck, clsKey(k.marshal()))
		cv = append(cv, v)
	}
	fills[mapClasses] = mapFill{ck, cv, len(ck)}
	lists := &ebpf.MapSpec{Name: mapLists, Type: ebpf.Array, KeySize: 4, ValueSize: 4,
		MaxEntries: uint32(max(1, len(cl.lists)))}
	fills[mapLists] = mapFill{indices(len(cl.lists)), append([]uint32(nil), cl.lists...), len(cl.lists)}
	return map[string]*ebpf.MapSpec{
		mapRules:   rules,
		mapSegs:    segs,
		mapGroups:  groups,
		mapClasses: classes,
		mapLists:   lists,
		mapCounters: {Name: mapCounters, Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: cntSize,
			MaxEntries: uint32(facts.numEntries)},
		mapCtx: CtxSpec(),
		// One row per possible CPU, indexed by bpf_get_smp_processor_id.
		mapJStack: {Name: mapJStack, Type: ebpf.Array, KeySize: 4, ValueSize: uint32(4 * facts.stackCap),
			MaxEntries: uint32(possibleCPUs())},
	}, fills
}
