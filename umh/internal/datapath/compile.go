package datapath

import (
	"fmt"
	"sync"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/cilium/ebpf"
)

// Map names in the collection (bpf/datapath.c).
const (
	mapRules    = datapathMapRules
	mapClasses  = datapathMapClasses
	mapSegs     = datapathMapSegs
	mapGroups   = datapathMapGroups
	mapLists    = datapathMapLists
	mapCounters = datapathMapCounters
	mapCtx      = datapathMapCtx
	mapJStack   = datapathMapJstack
	mapState    = datapathMapState
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
	Buckets  int // keys in the classes map, beside NoPorts
	// NoPorts are the buckets of groups with port masks keyed without
	// the ports, for the packets that could hotdrop.
	NoPorts int
	Linear  int // entries on linear lists
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
	// Exts are the kernel extensions the programs call out to, in the
	// order of their indexes (ctx->callout).
	Exts []Ext
	// Conntrack: some program reads conntrack (conntrack, state), from
	// the ct_* fields of the ctx, which the module must then fill.
	Conntrack bool
	// IfNames: some program compares interface names, from the in and
	// out fields of the ctx, which the module must then fill.
	IfNames bool
	fills   map[string]mapFill
}

var (
	objOnce sync.Once
	objSpec *ebpf.CollectionSpec
	objErr  error
)

// object is the compiled BPF object (datapath_bpfel.o), parsed once.
func object() (*ebpf.CollectionSpec, error) {
	objOnce.Do(func() { objSpec, objErr = loadDatapath() })
	if objErr != nil {
		return nil, fmt.Errorf("datapath: the BPF object: %w", objErr)
	}
	return objSpec.Copy(), nil
}

// hookProgs are the object's programs by hook: the general one and the
// straight-line one for a hook whose first entry ends every packet.
var hookProgs = [numHooks][2]string{
	{datapathProgIptPrerouting, datapathProgFirstPrerouting},
	{datapathProgIptInput, datapathProgFirstInput},
	{datapathProgIptForward, datapathProgFirstForward},
	{datapathProgIptOutput, datapathProgFirstOutput},
	{datapathProgIptPostrouting, datapathProgFirstPostrouting},
}

func b32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// Compile compiles a validated table into BPF. Every match and target that
// package ipt accepts is compiled; ErrUnsupported is left for what a
// validated table cannot hold (other targets, verdicts, too many records).
func Compile(t *ipt.Table, opts Options) (*Spec, error) {
	n := len(t.Entries)
	if n == 0 {
		return nil, fmt.Errorf("datapath: table %q has no entries", t.Name)
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
	recs := make([]record, n, n+n/4)
	cfg := config{NumEntries: uint32(n), NumGroups: uint32(len(cl.groups)), StackSize: uint32(t.StackSize),
		Linear: b32(opts.Linear)}
	var exts []Ext
	ct := false
	pushes := 0
	actions, targets := make([]datapathAction, n), make([]uint32, n)
	for i, e := range t.Entries {
		er, err := encodeEntry(t, e, &exts)
		if err != nil {
			return nil, fmt.Errorf("datapath: table %q: %w", t.Name, err)
		}
		actions[i], targets[i] = er.action, er.target
		if er.action == actJump {
			pushes++
		}
		ct = ct || er.ct
		cfg.NeedIn |= b32(e.IP.InIfaceMask != [ipt.IfNameSize]byte{})
		cfg.NeedOut |= b32(e.IP.OutIfaceMask != [ipt.IfNameSize]byte{})
		for _, m := range e.Matches {
			if x, ok := m.Info.(*ipt.TCP); ok && x.Option != 0 {
				cfg.TcpOpts = 1
			}
			switch m.Info.(type) {
			case *ipt.TCP, *ipt.UDP, *ipt.ICMP, *ipt.Multiport:
				cfg.NeedL4 = 1
			}
		}
		for k := range er.recs {
			r := &er.recs[k]
			r.Cont, r.Action, r.Target, r.Seg = none, er.action, er.target, cl.segOf[i]
			if k == 0 {
				recs[i] = *r
				continue
			}
			if k == 1 {
				recs[i].Cont = uint32(len(recs))
			} else {
				recs[len(recs)-1].Cont = uint32(len(recs))
			}
			recs = append(recs, *r)
		}
		if len(recs) > maxRecords {
			return nil, fmt.Errorf("datapath: table %q: more than %d records: %w", t.Name, maxRecords, ErrUnsupported)
		}
	}
	cfg.NumRecords = uint32(len(recs))
	cfg.StackCap = uint32(max(1, min(t.StackSize, pushes)))
	cfg.Callouts = b32(len(exts) > 0)
	cfg.Conntrack = b32(ct)

	spec, err := object()
	if err != nil {
		return nil, err
	}
	progs := map[string]*ebpf.ProgramSpec{}
	for _, h := range hooks {
		if h.Hook < 0 || h.Hook >= ipt.NumHooks || t.ValidHooks&(1<<h.Hook) == 0 {
			return nil, fmt.Errorf("datapath: table %q has no hook %d", t.Name, h.Hook)
		}
		start, under := t.EntryAt(t.HookEntry[h.Hook]), t.EntryAt(t.Underflow[h.Hook])
		if start == nil || under == nil {
			return nil, fmt.Errorf("datapath: table %q: hook %s has no entry", t.Name, ipt.HookNames[h.Hook])
		}
		hc := hookCfg{Start: uint32(start.Index), Under: uint32(under.Index), In: b32(h.In), Out: b32(h.Out)}
		prog := hookProgs[h.Hook][0]
		// A hook whose first entry matches every packet and has a
		// verdict (a chain that is just its policy) gets the
		// straight-line program.
		if a := actions[start.Index]; unconditional(start) && (a == actAccept || a == actDrop || a == actQueue) {
			prog, hc.Verdict = hookProgs[h.Hook][1], targets[start.Index]
			switch a {
			case actAccept:
				hc.Verdict = NFAccept
			case actDrop:
				hc.Verdict = NFDrop
			}
		}
		// A hook that starts with a conntrack or state match alone and
		// a verdict (-m conntrack --ctstate ESTABLISHED,RELATED -j
		// ACCEPT): the program tries that entry first.
		if a := actions[start.Index]; prog == hookProgs[h.Hook][0] && ctAlone(start) &&
			(a == actAccept || a == actDrop || a == actQueue) {
			hc.CtFirst, hc.Verdict = 1, targets[start.Index]
			switch a {
			case actAccept:
				hc.Verdict = NFAccept
			case actDrop:
				hc.Verdict = NFDrop
			}
		}
		cfg.Hooks[h.Hook] = hc
		ps := spec.Programs[prog].Copy()
		ps.Name = ProgramName(h.Hook)
		progs[ps.Name] = ps
	}
	spec.Programs = progs
	if err := spec.Variables[datapathVarCfg].Set(cfg); err != nil {
		return nil, fmt.Errorf("datapath: set the configuration: %w", err)
	}
	fills := buildMaps(spec, cl, recs, cfg)
	st := Stats{Entries: n, Records: len(recs), Segments: len(cl.segEnds), Groups: len(cl.groups),
		Buckets: len(cl.heads) - cl.noPorts, NoPorts: cl.noPorts, Linear: cl.linear}
	for _, c := range cl.bucketN {
		st.MaxBucket = max(st.MaxBucket, c)
	}
	return &Spec{Collection: spec, Hooks: hooks, Stats: st, Exts: exts, Conntrack: ct,
		IfNames: cfg.NeedIn|cfg.NeedOut != 0, fills: fills}, nil
}

// ctAlone: e's only condition is one conntrack or state match (comments
// aside), which the program evaluates from the ctx alone.
func ctAlone(e *ipt.Entry) bool {
	if e.IP != (ipt.IP{}) {
		return false
	}
	n := 0
	for _, m := range e.Matches {
		switch m.Info.(type) {
		case *ipt.Comment:
		case *ipt.Conntrack, *ipt.State:
			n++
		default:
			return false
		}
	}
	return n == 1
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

// mapFill is one map's contents: one batch of keys and values (typed
// slices, so that Map.BatchUpdate sees one element per index), written by
// Load with one BPF_MAP_UPDATE_BATCH, not one update per element as
// MapSpec.Contents would be.
type mapFill struct {
	keys, values any
	n            int
}

func indices(n int) []uint32 {
	k := make([]uint32, n)
	for i := range k {
		k[i] = uint32(i)
	}
	return k
}

// buildMaps sizes the object's maps for the table and returns their
// contents.
func buildMaps(spec *ebpf.CollectionSpec, cl *classification, recs []record, cfg config) map[string]mapFill {
	fills := map[string]mapFill{}
	m := spec.Maps
	m[mapRules].MaxEntries = uint32(len(recs))
	fills[mapRules] = mapFill{indices(len(recs)), recs, len(recs)}

	sv := make([]segVal, len(cl.segEnds))
	for s, end := range cl.segEnds {
		sv[s] = segVal{End: end, Ghead: cl.listFirst(cl.ghead[s]), Gmask: cl.gmask[s], Gpos: cl.ghead[s]}
	}
	m[mapSegs].MaxEntries = uint32(len(sv))
	fills[mapSegs] = mapFill{indices(len(sv)), sv, len(sv)}

	gv := make([]grpVal, len(cl.groups))
	for g, s := range cl.groups {
		gv[g] = grpVal{Smask: s.smask, Dmask: s.dmask, Pmask: s.pmask, Spmask: s.spmask, Dpmask: s.dpmask,
			AgreeMask: s.agreeMask, AgreeVal: s.agreeVal}
	}
	m[mapGroups].MaxEntries = uint32(max(1, len(gv)))
	fills[mapGroups] = mapFill{indices(len(gv)), gv, len(gv)}

	ck, cv := make([]clsKey, 0, len(cl.heads)), make([]clsVal, 0, len(cl.heads))
	for k, pos := range cl.heads {
		ck = append(ck, k.bpf())
		cv = append(cv, clsVal{First: cl.lists[pos], Pos: pos})
	}
	m[mapClasses].MaxEntries = uint32(max(1, len(ck)))
	fills[mapClasses] = mapFill{ck, cv, len(ck)}

	m[mapLists].MaxEntries = uint32(max(1, len(cl.lists)))
	fills[mapLists] = mapFill{indices(len(cl.lists)), append([]uint32(nil), cl.lists...), len(cl.lists)}

	m[mapCounters].MaxEntries = cfg.NumEntries
	// One row of stack_cap slots per possible CPU, indexed by
	// bpf_get_smp_processor_id; its size is the table's, not the C
	// type's, so the map has no BTF.
	js := m[mapJStack]
	js.ValueSize, js.MaxEntries, js.Key, js.Value = 4*cfg.StackCap, uint32(possibleCPUs()), nil, nil
	return fills
}
