// Package table keeps the iptables "filter" table of every network
// namespace and answers the iptables sockopt commands on it, errno for
// errno as ip_tables' do_ipt_set_ctl and do_ipt_get_ctl (Linux 6.1).
//
// A table name other than "filter" is answered with -ENOPROTOOPT: the
// kernel then passes the very same call on to ip_tables (net/ipv4/
// ip_sockglue.c), which serves nat, mangle, raw and security as usual.
package table

import (
	"fmt"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// FilterTable is the only table bpfilter serves.
const FilterTable = "filter"

// Tables holds the filter table of each network namespace, by the inode
// number of the namespace. A namespace starts with the table
// iptable_filter starts with (ipt.InitialFilter) on its first request.
//
// The hooks are called with the Tables lock held: they must not call
// back into Tables.
type Tables struct {
	// OnReplace, if set, is called with a validated table for a namespace
	// before it replaces the namespace's current table (the place to
	// compile and attach it). It returns what the table it replaced has
	// counted since it was installed (read after the switch, so that no
	// packet is lost between the two; nil if nothing). If it returns an
	// error, IPT_SO_SET_REPLACE fails with the error's errno (a unix.Errno
	// it wraps, EINVAL if none) and the current table stays.
	OnReplace func(netns uint64, t *ipt.Table) (replaced []ipt.Counters, err error)
	// LiveCounters, if set, returns what the installed table t has counted
	// per entry (in entry order) beyond the counters kept here; GET_ENTRIES
	// adds them (a replace gets the final ones from OnReplace). A short
	// slice counts zero for the rest.
	LiveCounters func(netns uint64, t *ipt.Table) []ipt.Counters
	// OnChange, if set, is told a namespace's table and kept counters
	// after every change to either (to keep them where a restarted umh
	// finds them: see Restore).
	OnChange func(netns uint64, t *ipt.Table, kept []ipt.Counters)

	mu sync.Mutex
	ns map[uint64]*state
}

// state is one namespace's filter table and its counters.
type state struct {
	table    *ipt.Table
	counters []ipt.Counters // one per entry: what ADD_COUNTERS added
}

// New returns an empty Tables.
func New() *Tables { return &Tables{ns: map[uint64]*state{}} }

// stateLocked is the state of netns, created if needed.
func (s *Tables) stateLocked(netns uint64) *state {
	if s.ns == nil {
		s.ns = map[uint64]*state{}
	}
	st, ok := s.ns[netns]
	if !ok {
		t := ipt.InitialFilter()
		st = &state{table: t, counters: make([]ipt.Counters, t.NumEntries())}
		s.ns[netns] = st
	}
	return st
}

// countersLocked is the table's counters: kept plus live.
func (s *Tables) countersLocked(netns uint64, st *state) []ipt.Counters {
	c := append([]ipt.Counters(nil), st.counters...)
	if s.LiveCounters != nil {
		live := s.LiveCounters(netns, st.table)
		for i := range c {
			if i < len(live) {
				c[i].Pcnt += live[i].Pcnt
				c[i].Bcnt += live[i].Bcnt
			}
		}
	}
	return c
}

// Restore sets the table of netns and its kept counters (one per entry),
// as a restarted umh takes back what OnChange was told before.
func (s *Tables) Restore(netns uint64, t *ipt.Table, kept []ipt.Counters) error {
	if len(kept) != t.NumEntries() {
		return fmt.Errorf("table: restore netns %d: %d counters for %d entries", netns, len(kept), t.NumEntries())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stateLocked(netns)
	st.table, st.counters = t, append([]ipt.Counters(nil), kept...)
	return nil
}

func (s *Tables) changedLocked(netns uint64, st *state) {
	if s.OnChange != nil {
		s.OnChange(netns, st.table, st.counters)
	}
}

// Forget drops the state of a network namespace that no longer exists. A
// later request for the same inode number starts from a fresh table.
func (s *Tables) Forget(netns uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ns, netns)
}

// Current is the table of netns and its counters (as GET_ENTRIES would
// report them).
func (s *Tables) Current(netns uint64) (*ipt.Table, []ipt.Counters) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stateLocked(netns)
	return st.table, s.countersLocked(netns, st)
}

// Namespaces lists the namespaces that have state.
func (s *Tables) Namespaces() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint64, 0, len(s.ns))
	for n := range s.ns {
		out = append(out, n)
	}
	return out
}

// Sockopt answers one iptables sockopt call made in network namespace
// netns: cmd is the optname, isSet tells setsockopt from getsockopt, mem
// is the caller's buffer. status is what the call returns: 0 or a negative
// errno (as seen by the caller of ip_tables: even GET_REVISION_* returns 0
// on success). reason says why a call was
// refused (-ENOPROTOOPT included), or warns about a replace whose old
// counters could not be handed back; it is empty otherwise.
func (s *Tables) Sockopt(netns uint64, cmd uint32, isSet bool, mem Memory) (status int32, reason string) {
	if isSet {
		switch cmd {
		case ipt.SoSetReplace:
			return s.replace(netns, mem)
		case ipt.SoSetAddCounters:
			return s.addCounters(netns, mem)
		}
		return -int32(unix.EINVAL), "unknown setsockopt " + itoa(cmd)
	}
	switch cmd {
	case ipt.SoGetInfo:
		return s.getInfo(netns, mem)
	case ipt.SoGetEntries:
		return s.getEntries(netns, mem)
	case ipt.SoGetRevisionMatch, ipt.SoGetRevisionTarget:
		return getRevision(cmd == ipt.SoGetRevisionTarget, mem)
	}
	return -int32(unix.EINVAL), "unknown getsockopt " + itoa(cmd)
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

// notOurs is the answer for a table bpfilter does not serve.
func notOurs(name string) (int32, string) {
	return -int32(unix.ENOPROTOOPT), "table \"" + name + "\" is not bpfilter's: left to ip_tables"
}
