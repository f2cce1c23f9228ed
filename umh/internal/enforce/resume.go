package enforce

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/bpfilter/bpfilter/umh/internal/datapath"
	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/bpfilter/bpfilter/umh/internal/kmodctl"
)

// Resume takes over what a previous umh left, before the first request.
// What the module holds is the truth: for each namespace it holds
// programs for, the store's record of the same gen gives the table and
// its kept counters, which Resume hands to restore (package table's
// Restore), and the programs' counters map is found by id, live counts
// included (no fd is kept: see the package doc). Records of other gens
// are dropped (an Install that did not finish, or one that did whose old
// record was not removed yet).
//
// A namespace the module holds programs for without a matching record is
// logged as an error and its programs are dropped (the module accepts
// every packet there): honest, rather than enforcing a table nobody can
// list. A record without held programs is a namespace that is gone (its
// exit may still be on its way): forgotten.
func (e *Enforcer) Resume(restore func(netns uint64, t *ipt.Table, kept []ipt.Counters) error) {
	held, err := e.ctl.Held()
	if err != nil {
		e.log.Errorf("enforce: cannot learn what the module holds, nothing taken over: %v", err)
		return
	}
	e.bumpGen(held)
	recs := map[uint64]map[uint64]*record{}
	if e.store != nil {
		rs, errs := e.store.load()
		for _, err := range errs {
			e.log.Errorf("state left by the previous umh is unreadable, dropped: %v", err)
		}
		for _, r := range rs {
			if recs[r.Netns] == nil {
				recs[r.Netns] = map[uint64]*record{}
			}
			recs[r.Netns][r.Gen] = r
			e.mu.Lock()
			e.gen = max(e.gen, r.Gen)
			e.mu.Unlock()
		}
	}
	for _, h := range held {
		r := recs[h.Netns][h.Gen]
		delete(recs, h.Netns)
		if err := e.resumeOne(h, r, restore); err != nil {
			e.log.Errorf("netns %d: %v: its programs are dropped, the namespace accepts every packet", h.Netns, err)
			e.drop(h.Netns)
		}
	}
	for netns := range recs {
		e.log.Infof("netns %d went away while no umh ran: forgotten", netns)
		if e.store != nil {
			e.store.removeOthers(netns, 0)
		}
	}
}

// resumeOne takes over one held namespace whose record is r (nil: none).
// On error the caller drops the namespace's programs.
func (e *Enforcer) resumeOne(h kmodctl.Held, r *record, restore func(uint64, *ipt.Table, []ipt.Counters) error) error {
	if r == nil {
		return fmt.Errorf("the module holds programs (gen %d) of a table no record describes", h.Gen)
	}
	t, err := r.table()
	if err != nil {
		return fmt.Errorf("the record of gen %d is invalid: %w", h.Gen, err)
	}
	counters, err := findCounters(h, t.NumEntries())
	if err != nil {
		e.log.Warnf("netns %d: cannot take over its programs (%v): installing the table again, its live counters are lost", h.Netns, err)
		if _, err := e.Install(h.Netns, t); err != nil {
			return fmt.Errorf("table not enforced: %w", err)
		}
	} else {
		e.mu.Lock()
		e.ns[h.Netns] = &nsState{counters: counters, entries: t.NumEntries(), gen: h.Gen, table: t, kept: r.Kept}
		e.mu.Unlock()
		if e.store != nil {
			e.store.removeOthers(h.Netns, h.Gen)
		}
	}
	if err := restore(h.Netns, t, r.Kept); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	e.Changed(h.Netns, t, r.Kept)
	e.log.Infof("netns %d: took over a table of %d entries", h.Netns, t.NumEntries())
	return nil
}

// drop tells the module to drop the programs of netns, and forgets them.
func (e *Enforcer) drop(netns uint64) {
	e.mu.Lock()
	gen := e.nextGenLocked()
	e.mu.Unlock()
	if err := e.ctl.SetProgs(netns, gen, [kmodctl.NumHooks]*ebpf.Program{}, nil, kmodctl.Set{}); err != nil && !errors.Is(err, kmodctl.ErrGone) {
		e.log.Errorf("netns %d: dropping its programs: %v", netns, err)
	}
	e.NetnsExit(netns)
}

// findCounters is the id of the counters map of the programs held for
// h.Netns, for a table of entries entries.
func findCounters(h kmodctl.Held, entries int) (ebpf.MapID, error) {
	for _, id := range h.ProgID {
		if id != 0 {
			return datapath.FindCounters(ebpf.ProgramID(id), entries)
		}
	}
	return 0, errors.New("no program held")
}
