// Package enforce makes the filter table of each network namespace decide
// the fate of packets: it compiles every table that package table accepts
// (package codegen), hands the programs to the module, which runs them at
// netfilter's hooks of the namespace (package kmodctl), reads back what
// they counted, and keeps what a restarted umh needs to take over (the
// store).
//
// A namespace is named by its net_cookie, which the kernel never reuses.
// Nothing here opens a namespace or attaches anything: the module holds
// the programs, and drops a namespace's programs by itself when the
// namespace goes (NetnsExit only tells the umh) and everything at rmmod.
//
// # No file descriptors
//
// Once the module has a namespace's programs, the umh keeps no file
// descriptor of them or of their maps, only the counters map's id: the
// module's references are then the only ones, and nothing of a namespace
// outlives its exit (the module's pernet exit) whatever the umh does, even
// stopped. The counters map is opened by id for each read and closed
// right after; when it is gone (ENOENT), so is the namespace, and its
// counters with it. A replace opens the old one before SET_PROGS, which
// drops the module's references, and reads it after, when no packet runs
// the old programs any more: the final counts.
//
// # Restart
//
// What the module holds (kmodctl.Held: namespace, gen, program ids) is the
// truth about what is enforced. Every set of programs handed over has a
// gen, never reused, and before the module gets them the store has the
// table under that gen; once the module has them, the records of other
// gens of the namespace go. So whenever the umh dies, even between the
// two, the store has a record of the gen that the module holds, and
// Resume restores that table (see resume.go).
package enforce

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/bpfilter/bpfilter/umh/internal/datapath"
	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/bpfilter/bpfilter/umh/internal/klog"
	"github.com/bpfilter/bpfilter/umh/internal/kmodctl"
)

// Kmod is what the Enforcer needs of the module: *kmodctl.Conn.
type Kmod interface {
	// SetProgs makes progs (by kmodctl.Hook*; nil: none) and ctx the
	// programs of namespace netns, calling out to set's extensions,
	// tagged gen; all nil (and an empty set) drops them.
	SetProgs(netns, gen uint64, progs [kmodctl.NumHooks]*ebpf.Program, ctx *ebpf.Map, set kmodctl.Set) error
	// Held lists what the module holds.
	Held() ([]kmodctl.Held, error)
}

var _ Kmod = (*kmodctl.Conn)(nil)

// Enforcer enforces the tables of every namespace. Its methods may be
// called from any goroutine.
type Enforcer struct {
	log   *klog.Logger
	ctl   Kmod
	store *store // nil: nothing is kept for a restart

	mu  sync.Mutex
	gen uint64 // the last gen handed out
	ns  map[uint64]*nsState

	// crash, if set (tests), is called at the points of Install where a
	// dying umh leaves the most to sort out; it panics to stop there.
	crash func(point string)
}

// nsState is what is enforced in one namespace.
type nsState struct {
	// counters is the id of the counters map of the programs the module
	// holds, for a table of entries entries; no fd of it is kept.
	counters ebpf.MapID
	entries  int
	gen      uint64
	// table and kept counters, as package table last reported them.
	table *ipt.Table
	kept  []ipt.Counters
}

// New returns an Enforcer that hands programs to the module through ctl
// and keeps its state for a restart in dir (under the umh's working
// directory, the private tmpfs of the usermode driver: it outlives a umh
// and goes with the module). With dir empty it keeps nothing: a restarted
// umh then finds tables nobody can list, and drops them (Resume).
func New(log *klog.Logger, dir string, ctl Kmod) (*Enforcer, error) {
	if ctl == nil {
		return nil, errors.New("enforce: no module connection")
	}
	e := &Enforcer{log: log, ctl: ctl, ns: map[uint64]*nsState{}}
	if dir != "" {
		st, err := openStore(dir)
		if err != nil {
			return nil, err
		}
		e.store = st
		e.gen = max(e.gen, st.maxGen())
	}
	// Gens must not repeat across restarts: start above what the module
	// holds (Resume looks again).
	if held, err := ctl.Held(); err != nil {
		e.log.Warnf("enforce: %v", err)
	} else {
		e.bumpGen(held)
	}
	return e, nil
}

func (e *Enforcer) bumpGen(held []kmodctl.Held) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, h := range held {
		e.gen = max(e.gen, h.Gen)
	}
}

func (e *Enforcer) nextGenLocked() uint64 {
	e.gen++
	return e.gen
}

// kmodHooks maps the module's hook order (BPFILTER_HOOK_*) to ipt's.
var kmodHooks = [kmodctl.NumHooks]int{
	kmodctl.HookInput:   ipt.HookLocalIn,
	kmodctl.HookForward: ipt.HookForward,
	kmodctl.HookOutput:  ipt.HookLocalOut,
}

// progsOf are the programs of objs in the module's hook order.
func progsOf(objs *datapath.Objects) (p [kmodctl.NumHooks]*ebpf.Program) {
	for i, h := range kmodHooks {
		p[i] = objs.Program(h)
	}
	return p
}

// kernelSet is what the module runs for the programs of spec: the
// kernel extensions they call out to, each with its rule's ipt_ip and
// hooks as ip_tables' checkentry sees them, and conntrack.
func kernelSet(spec *datapath.Spec) kmodctl.Set {
	set := kmodctl.Set{Conntrack: spec.Conntrack, IfNames: spec.IfNames, Exts: make([]kmodctl.Ext, len(spec.Exts))}
	for i, x := range spec.Exts {
		set.Exts[i] = kmodctl.Ext{
			Name:     x.Ext.Name,
			Revision: x.Ext.Revision,
			Target:   x.Ext.Target,
			HookMask: x.Entry.Hooks,
			IP:       x.Entry.IP.Bytes(),
			Data:     x.Ext.Data,
		}
	}
	return set
}

func (e *Enforcer) crashPoint(point string) {
	if e.crash != nil {
		e.crash(point)
	}
}

// Install compiles t, loads it and makes it the enforced table of netns.
// It returns what the table it replaced counted, final (the module no
// longer runs its programs). On error nothing changed; the error keeps the
// module's errno (ESRCH: the namespace is gone). Whatever the outcome, the
// umh holds no fd of the loaded programs and maps when it returns.
func (e *Enforcer) Install(netns uint64, t *ipt.Table) ([]ipt.Counters, error) {
	spec, err := datapath.Compile(t, datapath.Options{})
	if err != nil {
		return nil, err
	}
	objs, err := spec.Load(nil)
	if err != nil {
		return nil, oneLine(err)
	}
	// The module takes its own references during SetProgs; ours go on
	// every return (and when a test's crash point panics).
	defer objs.Close()
	counters, err := objs.CountersID()
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	gen := e.nextGenLocked()
	kept := make([]ipt.Counters, t.NumEntries()) // ip_tables zeroes a new table's counters
	if e.store != nil {
		if err := e.store.save(netns, gen, t, kept); err != nil {
			return nil, fmt.Errorf("enforce: netns %d: cannot keep the table for a restart: %w", netns, err)
		}
	}
	// The old counters map, opened while the module still holds its
	// programs, read once SetProgs has dropped them.
	st := e.ns[netns]
	var old *ebpf.Map
	if st != nil {
		old = e.openCounters(netns, st)
		if old != nil {
			defer old.Close()
		}
	}
	e.crashPoint("before SetProgs")
	if err := e.ctl.SetProgs(netns, gen, progsOf(objs), objs.Ctx, kernelSet(spec)); err != nil {
		if e.store != nil {
			e.store.remove(netns, gen)
		}
		return nil, err
	}
	e.crashPoint("after SetProgs")
	var replaced []ipt.Counters
	if old != nil {
		if replaced, err = datapath.ReadCounters(old, st.entries); err != nil {
			e.log.Warnf("netns %d: counters of the replaced table are lost: %v", netns, err)
		}
	}
	if e.store != nil {
		e.store.removeOthers(netns, gen)
	}
	e.ns[netns] = &nsState{counters: counters, entries: t.NumEntries(), gen: gen, table: t, kept: kept}
	return replaced, nil
}

// openCounters opens the counters map of st, or returns nil: when it is
// gone, so is the namespace (its exit is on its way), and what it counted.
func (e *Enforcer) openCounters(netns uint64, st *nsState) *ebpf.Map {
	m, err := datapath.OpenCounters(st.counters, st.entries)
	switch {
	case errors.Is(err, os.ErrNotExist):
		e.log.Debugf("netns %d: its counters map %d is gone (so is the namespace): counted nothing", netns, st.counters)
		return nil
	case err != nil:
		e.log.Warnf("netns %d: counters lost: %v", netns, err)
		return nil
	}
	return m
}

// Counted is what the installed table of netns has counted, per entry
// (nil: nothing, or the namespace is gone).
func (e *Enforcer) Counted(netns uint64) []ipt.Counters {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.ns[netns]
	if st == nil {
		return nil
	}
	m := e.openCounters(netns, st)
	if m == nil {
		return nil
	}
	defer m.Close()
	c, err := datapath.ReadCounters(m, st.entries)
	if err != nil {
		e.log.Warnf("netns %d: reading counters: %v", netns, err)
		return nil
	}
	return c
}

// Changed records the table and kept counters of netns (package table's
// OnChange) for a restarted umh.
func (e *Enforcer) Changed(netns uint64, t *ipt.Table, kept []ipt.Counters) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.ns[netns]
	if st == nil {
		// Nothing enforced (no replace yet): nothing to take over.
		return
	}
	st.table, st.kept = t, append([]ipt.Counters(nil), kept...)
	if e.store == nil {
		return
	}
	if err := e.store.save(netns, st.gen, st.table, st.kept); err != nil {
		e.log.Errorf("netns %d: cannot keep state for a restart: %v", netns, err)
	}
}

// NetnsExit forgets a namespace that is gone. The module has already
// dropped its programs, the last references to them.
func (e *Enforcer) NetnsExit(netns uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.ns, netns)
	if e.store != nil {
		e.store.removeOthers(netns, 0)
	}
}

// Abandon forgets what the Enforcer knows (it holds no fd) and nothing
// else, as a dying umh does. For tests of a takeover.
func (e *Enforcer) Abandon() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.ns)
}

// oneLine keeps an error to one line for the kernel log, and its chain
// (the errno of a failed load) for the caller.
func oneLine(err error) error { return flat{err} }

type flat struct{ err error }

func (f flat) Error() string { return strings.ReplaceAll(f.err.Error(), "\n", " ") }
func (f flat) Unwrap() error { return f.err }
