package enforce

import (
	"errors"
	"os"

	"github.com/bpfilter/bpfilter/umh/internal/attach"
	"github.com/bpfilter/bpfilter/umh/internal/codegen"
	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/bpfilter/bpfilter/umh/internal/netnsfind"
)

// Resume takes over what a previous umh left in the store, before the
// first request: for each namespace, the dispatchers and programs still
// attached (with their live counters), and the table and kept counters,
// which it hands to restore (package table's Restore).
//
// A namespace whose programs are gone but which still exists gets its
// table compiled and attached again (its live counters are lost, and
// logged as such); one that no longer exists is forgotten.
func (e *Enforcer) Resume(restore func(netns uint32, t *ipt.Table, kept []ipt.Counters) error) {
	if e.store == nil {
		return
	}
	recs, errs := e.store.load()
	for _, err := range errs {
		e.log.Errorf("state left by the previous umh is unreadable, dropped: %v", err)
	}
	for _, r := range recs {
		t, err := r.table()
		if err != nil {
			e.log.Errorf("netns %d: state left by the previous umh is invalid, dropped: %v", r.Netns, err)
			e.store.remove(r.Netns)
			continue
		}
		err = e.adopt(r, t)
		if err != nil {
			if !exists(r.Netns) {
				e.log.Infof("netns %d went away while no umh ran: forgotten", r.Netns)
				e.NetnsExit(r.Netns) // what adopt took, if anything
				// The pin keeps the namespace's prog array, and so its
				// programs, alive even when adopt failed before taking it.
				if r.Attach.Pin != "" {
					if err := os.Remove(r.Attach.Pin); err != nil && !errors.Is(err, os.ErrNotExist) {
						e.log.Warnf("netns %d: %v", r.Netns, err)
					}
				}
				e.store.remove(r.Netns)
				continue
			}
			e.log.Warnf("netns %d: cannot take over its programs (%v): attaching the table again, its live counters are lost", r.Netns, err)
			if _, err := e.Install(r.Netns, t); err != nil {
				e.log.Errorf("netns %d: table not enforced: %v", r.Netns, err)
				e.store.remove(r.Netns)
				continue
			}
		}
		if err := restore(r.Netns, t, r.Kept); err != nil {
			e.log.Errorf("%v", err)
			continue
		}
		e.Changed(r.Netns, t, r.Kept)
		e.log.Infof("netns %d: took over a table of %d entries", r.Netns, t.NumEntries())
	}
}

func exists(netns uint32) bool {
	f, err := netnsfind.Open(uint64(netns))
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// adopt takes over the attached dispatchers and programs of a record.
func (e *Enforcer) adopt(r *record, t *ipt.Table) error {
	if r.Attach.Progs == 0 {
		return errors.New("no attach state")
	}
	att, err := attach.Adopt(opener(r.Netns), r.Attach)
	if err != nil {
		return err
	}
	// From here on the dispatchers are ours: if their programs cannot be
	// taken over, Install puts new ones into them.
	e.mu.Lock()
	e.ns[r.Netns] = &nsState{att: att}
	e.mu.Unlock()
	progs, err := att.Programs()
	if err != nil {
		return err
	}
	objs, err := codegen.Adopt(progs, t.NumEntries())
	if err != nil {
		closeProgs(progs)
		return err
	}
	att.Resume(objs)
	// Interfaces may have come while no umh ran.
	if err := att.Sync(); err != nil {
		e.log.Warnf("netns %d: interfaces that came while no umh ran: %v", r.Netns, err)
	}
	e.mu.Lock()
	e.ns[r.Netns].objs = objs
	e.mu.Unlock()
	return nil
}

func closeProgs[P interface{ Close() error }](ps map[int]P) {
	for _, p := range ps {
		p.Close()
	}
}
