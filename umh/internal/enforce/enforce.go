// Package enforce makes the filter table of each network namespace decide
// the fate of packets: it compiles every table that package table accepts
// (package codegen), attaches it to the namespace's interfaces (package
// attach), reads back what it counted, and keeps what a restarted umh
// needs to take over (package enforce's store).
//
// Nothing here holds a network namespace between calls: a namespace is
// found again by its inode (package netnsfind) each time it is needed, so
// that it goes away when its last user leaves, as with ip_tables.
package enforce

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/bpfilter/bpfilter/umh/internal/attach"
	"github.com/bpfilter/bpfilter/umh/internal/codegen"
	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/bpfilter/bpfilter/umh/internal/klog"
	"github.com/bpfilter/bpfilter/umh/internal/netnsfind"
)

// Enforcer enforces the tables of every namespace. Its methods may be
// called from any goroutine.
type Enforcer struct {
	log   *klog.Logger
	store *store // nil: nothing is kept for a restart
	pins  *pins  // nil: nothing is pinned

	mu sync.Mutex
	ns map[uint32]*nsState
}

// nsState is what is enforced in one namespace.
type nsState struct {
	att  *attach.Attacher
	objs *codegen.Objects // installed
	// table and kept counters, as package table last reported them.
	table *ipt.Table
	kept  []ipt.Counters
}

// New returns an Enforcer that keeps its state for a restart in dir (under
// the umh's working directory, the private tmpfs of the usermode driver:
// it outlives a umh and goes with the module) and pins in a bpffs at
// bpffs (BPFFS; mounted if need be). With dir empty it keeps nothing and
// pins nothing: what it enforces stops when the process goes.
func New(log *klog.Logger, dir, bpffs string) (*Enforcer, error) {
	e := &Enforcer{log: log, ns: map[uint32]*nsState{}}
	if dir == "" {
		return e, nil
	}
	st, err := openStore(dir)
	if err != nil {
		return nil, err
	}
	p, err := preparePins(bpffs, dir)
	if err != nil {
		return nil, err
	}
	e.store, e.pins = st, p
	return e, nil
}

// opener finds namespace netns each time it is needed.
func opener(netns uint32) attach.Opener {
	return func() (*os.File, error) { return netnsfind.Open(uint64(netns)) }
}

// Install compiles t, loads it and makes it the enforced table of netns
// (attaching to the namespace's interfaces the first time). It returns
// what the table it replaced counted. On error nothing changed.
func (e *Enforcer) Install(netns uint32, t *ipt.Table) ([]ipt.Counters, error) {
	spec, err := codegen.Compile(t, codegen.Options{})
	if err != nil {
		return nil, err
	}
	objs, err := spec.Load(nil)
	if err != nil {
		return nil, oneLine(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.ns[netns]
	fresh := st == nil
	if fresh {
		pin := ""
		if e.pins != nil {
			pin = e.pins.path(netns)
		}
		att, err := attach.New(opener(netns), pin)
		if err != nil {
			objs.Close()
			return nil, err
		}
		st = &nsState{att: att}
	}
	if err := st.att.Install(objs); err != nil {
		objs.Close()
		if fresh {
			st.att.Close()
		}
		return nil, err
	}
	var replaced []ipt.Counters
	if st.objs != nil {
		// After the switch: the old programs no longer run (but for
		// packets already in them), so their counts are final.
		if replaced, err = st.objs.ReadCounters(); err != nil {
			e.log.Warnf("netns %d: counters of the replaced table are lost: %v", netns, err)
		}
		st.objs.Close()
	}
	st.objs = objs
	e.ns[netns] = st
	return replaced, nil
}

// Counted is what the installed table of netns has counted, per entry.
func (e *Enforcer) Counted(netns uint32) []ipt.Counters {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.ns[netns]
	if st == nil || st.objs == nil {
		return nil
	}
	c, err := st.objs.ReadCounters()
	if err != nil {
		e.log.Warnf("netns %d: reading counters: %v", netns, err)
		return nil
	}
	return c
}

// Changed records the table and kept counters of netns (package table's
// OnChange) for a restarted umh.
func (e *Enforcer) Changed(netns uint32, t *ipt.Table, kept []ipt.Counters) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.ns[netns]
	if st == nil {
		// Nothing enforced (no replace yet): nothing to take over.
		return
	}
	st.table, st.kept = t, append([]ipt.Counters(nil), kept...)
	e.saveLocked(netns, st)
}

func (e *Enforcer) saveLocked(netns uint32, st *nsState) {
	if e.store == nil || st.table == nil {
		return
	}
	as, err := st.att.State()
	if err == nil {
		err = e.store.save(netns, st.table, st.kept, as)
	}
	if err != nil {
		e.log.Errorf("netns %d: cannot keep state for a restart: %v", netns, err)
	}
}

// Netdev follows the interfaces of netns: it attaches to new ones,
// renames, and forgets those that are gone.
func (e *Enforcer) Netdev(netns uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.ns[netns]
	if st == nil {
		return
	}
	if err := st.att.Sync(); err != nil {
		if errors.Is(err, netnsfind.ErrNotFound) {
			// Its last user left: its exit is on the way.
			e.log.Debugf("netns %d: interfaces changed while it goes: %v", netns, err)
		} else {
			e.log.Errorf("netns %d: interfaces: %v", netns, err)
		}
	}
	e.saveLocked(netns, st)
}

// NetnsExit lets go of everything of a namespace that is gone.
func (e *Enforcer) NetnsExit(netns uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.ns[netns]
	if st == nil {
		return
	}
	if err := st.att.Release(); err != nil {
		e.log.Warnf("netns %d: %v", netns, err)
	}
	st.objs.Close()
	delete(e.ns, netns)
	if e.store != nil {
		e.store.remove(netns)
	}
}

// Shutdown detaches from every namespace and closes everything: the module
// is going, and nothing of bpfilter may stay in the kernel.
func (e *Enforcer) Shutdown() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for netns, st := range e.ns {
		if err := st.att.Close(); err != nil {
			errs = append(errs, fmt.Errorf("netns %d: %w", netns, err))
		}
		st.objs.Close()
		delete(e.ns, netns)
		if e.store != nil {
			e.store.remove(netns)
		}
	}
	if e.pins != nil {
		errs = append(errs, e.pins.remove())
	}
	return errors.Join(errs...)
}

// Abandon drops the Enforcer's file descriptors and nothing else, as a
// dying umh does. For tests of a takeover.
func (e *Enforcer) Abandon() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for netns, st := range e.ns {
		st.att.Abandon()
		st.objs.Close()
		delete(e.ns, netns)
	}
}

// oneLine keeps an error to one line for the kernel log, and its chain
// (the errno of a failed load) for the caller.
func oneLine(err error) error { return flat{err} }

type flat struct{ err error }

func (f flat) Error() string { return strings.ReplaceAll(f.err.Error(), "\n", " ") }
func (f flat) Unwrap() error { return f.err }
