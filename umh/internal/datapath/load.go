package datapath

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"unsafe"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/cilium/ebpf"
)

func possibleCPUs() int {
	n, err := ebpf.PossibleCPU()
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// Objects are a loaded Spec: one program per hook and the maps.
type Objects struct {
	Programs map[int]*ebpf.Program // by hook
	Counters *ebpf.Map
	Ctx      *ebpf.Map // MapCtx
	coll     *ebpf.Collection
	entries  int
}

// Load creates the maps (filled) and loads the programs. opts may be nil;
// to share one ctx map between collections, set
// opts.MapReplacements[MapCtx].
func (s *Spec) Load(opts *ebpf.CollectionOptions) (*Objects, error) {
	if opts == nil {
		opts = &ebpf.CollectionOptions{}
	}
	cs, err := bakeVariables(s.Collection)
	if err != nil {
		return nil, err
	}
	coll, err := ebpf.NewCollectionWithOptions(cs, *opts)
	if err != nil {
		// A *ebpf.VerifierError in the chain has the verifier's log
		// (print it with %+v).
		return nil, fmt.Errorf("datapath: load: %w", err)
	}
	if err := s.fill(coll, opts.MapReplacements); err != nil {
		coll.Close()
		return nil, err
	}
	o := &Objects{Programs: map[int]*ebpf.Program{}, Counters: coll.Maps[mapCounters],
		Ctx: coll.Maps[mapCtx], coll: coll, entries: s.Stats.Entries}
	if r := opts.MapReplacements[mapCtx]; r != nil {
		o.Ctx = r
	}
	for _, h := range s.Hooks {
		o.Programs[h.Hook] = coll.Programs[ProgramName(h.Hook)]
	}
	return o, nil
}

// fill writes the maps' contents, one BPF_MAP_UPDATE_BATCH per map (a
// table of 10,000 rules is some 30,000 elements: one system call each
// cost most of a load), or element by element on a kernel without the
// batch API (before 5.6). Replaced maps are the caller's: left alone.
func (s *Spec) fill(coll *ebpf.Collection, replaced map[string]*ebpf.Map) error {
	for name, f := range s.fills {
		m := coll.Maps[name]
		if f.n == 0 || replaced[name] != nil || m == nil {
			continue
		}
		done, err := m.BatchUpdate(f.keys, f.values, nil)
		if errors.Is(err, ebpf.ErrNotSupported) {
			err = updateEach(m, f)
		} else if err == nil && done != f.n {
			err = fmt.Errorf("%d of %d elements", done, f.n)
		}
		if err != nil {
			return fmt.Errorf("datapath: load: fill map %s: %w", name, err)
		}
	}
	return nil
}

func updateEach(m *ebpf.Map, f mapFill) error {
	keys, values := reflect.ValueOf(f.keys), reflect.ValueOf(f.values)
	for i := 0; i < f.n; i++ {
		if err := m.Update(keys.Index(i).Interface(), values.Index(i).Interface(), ebpf.UpdateAny); err != nil {
			return err
		}
	}
	return nil
}

// Program is the program of hook, or nil.
func (o *Objects) Program(hook int) *ebpf.Program { return o.Programs[hook] }

// Close releases programs and maps (a replaced ctx map is the caller's).
func (o *Objects) Close() error {
	o.coll.Close()
	return nil
}

// CountersID is the id of o's counters map: with it, the map can be
// opened again (OpenCounters) once o is closed, for as long as the
// programs that use it live (held by the module).
func (o *Objects) CountersID() (ebpf.MapID, error) {
	mi, err := o.Counters.Info()
	if err != nil {
		return 0, fmt.Errorf("datapath: counters map info: %w", err)
	}
	id, ok := mi.ID()
	if !ok {
		return 0, errors.New("datapath: the kernel reports no map ids")
	}
	return id, nil
}

// FindCounters is the id of the counters map of a loaded program that this
// process did not load (found by id after a restart), compiled from a
// table of entries entries. It keeps no file descriptor open. Errors wrap
// ENOENT (os.ErrNotExist) if no program has that id.
func FindCounters(prog ebpf.ProgramID, entries int) (ebpf.MapID, error) {
	p, err := ebpf.NewProgramFromID(prog)
	if err != nil {
		return 0, fmt.Errorf("datapath: program %d: %w", prog, err)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return 0, fmt.Errorf("datapath: program %d info: %w", prog, err)
	}
	ids, _ := info.MapIDs()
	for _, id := range ids {
		m, err := OpenCounters(id, entries)
		if err == nil {
			m.Close()
			return id, nil
		}
	}
	return 0, fmt.Errorf("datapath: program %d has no counters map for %d entries", prog, entries)
}

// OpenCounters opens the counters map of id, which must be one of
// bpfilter's for a table of at least entries entries (an id names one map
// only while it lives; the kernel allocates them cyclically). Errors wrap
// ENOENT (os.ErrNotExist) if no map has that id: its programs are gone.
func OpenCounters(id ebpf.MapID, entries int) (*ebpf.Map, error) {
	m, err := ebpf.NewMapFromID(id)
	if err != nil {
		return nil, fmt.Errorf("datapath: counters map %d: %w", id, err)
	}
	mi, err := m.Info()
	if err != nil || mi.Name != mapCounters || mi.Type != ebpf.PerCPUArray || mi.ValueSize != uint32(unsafe.Sizeof(counterVal{})) || int(mi.MaxEntries) < entries {
		m.Close()
		return nil, fmt.Errorf("datapath: map %d is not a counters map for %d entries (%v)", id, entries, err)
	}
	return m, nil
}

// ReadCounters sums the per-CPU counters of every entry, in entry order.
func (o *Objects) ReadCounters() ([]ipt.Counters, error) {
	return ReadCounters(o.Counters, o.entries)
}

// ReadCounters sums the per-CPU values of the first n entries of a
// counters map, with batched lookups (a table of 10,000 entries is read in
// a few system calls, not 10,000).
func ReadCounters(m *ebpf.Map, n int) ([]ipt.Counters, error) {
	out := make([]ipt.Counters, n)
	if n == 0 {
		return out, nil
	}
	ncpu := possibleCPUs()
	keys := make([]uint32, n)
	vals := make([]counterVal, n*ncpu)
	var cursor ebpf.MapBatchCursor
	got := 0
	for got < n {
		k, err := m.BatchLookup(&cursor, keys[got:], vals[got*ncpu:], nil)
		got += k
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("datapath: read counters: %w", err)
		}
	}
	if got < n {
		return nil, fmt.Errorf("datapath: read counters: %d of %d entries", got, n)
	}
	for i := 0; i < n; i++ {
		k := keys[i]
		if int(k) >= n {
			return nil, fmt.Errorf("datapath: read counters: key %d of %d", k, n)
		}
		for _, v := range vals[i*ncpu : (i+1)*ncpu] {
			out[k].Pcnt += v.Packets
			out[k].Bcnt += v.Bytes
		}
	}
	return out, nil
}

// bakeVariables is spec with its variables' values written into their
// sections' contents, and no Variables: a loaded Variable mmaps its map,
// which the mapping then keeps in the kernel until the garbage collector
// unmaps it, long after the module dropped the programs (the umh must
// hold nothing of a table it handed over).
func bakeVariables(spec *ebpf.CollectionSpec) (*ebpf.CollectionSpec, error) {
	cs := *spec
	cs.Maps = maps.Clone(spec.Maps)
	for _, v := range spec.Variables {
		ms := cs.Maps[v.SectionName]
		if ms == nil || len(ms.Contents) != 1 {
			return nil, fmt.Errorf("datapath: variable %s: section %s has no single value", v.Name, v.SectionName)
		}
		data, ok := ms.Contents[0].Value.([]byte)
		if !ok || int(v.Offset)+len(v.Value) > len(data) {
			return nil, fmt.Errorf("datapath: variable %s: does not fit section %s", v.Name, v.SectionName)
		}
		data = slices.Clone(data)
		copy(data[v.Offset:], v.Value)
		ms = ms.Copy()
		ms.Contents = []ebpf.MapKV{{Key: ms.Contents[0].Key, Value: data}}
		cs.Maps[v.SectionName] = ms
	}
	cs.Variables = nil
	return &cs, nil
}
