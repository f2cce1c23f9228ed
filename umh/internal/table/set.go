package table

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// replace is ip_tables' do_replace and __do_replace, in their order:
// the header's checks, reading the entries, translate_table, the counters
// allocation limit, valid_hooks, num_counters against the current number
// of entries (EAGAIN: the table changed since the caller read it), then
// the swap. The new table starts with zero counters; the old table's
// counters go to the caller's counters pointer (libiptc adds them back
// with IPT_SO_SET_ADD_COUNTERS).
func (s *Tables) replace(netns uint64, mem Memory) (int32, string) {
	optlen := setLen(mem)
	if optlen < ipt.ReplaceSize {
		return einval("IPT_SO_SET_REPLACE: optlen %d is shorter than ipt_replace", optlen)
	}
	hb := make([]byte, ipt.ReplaceSize)
	if err := readFull(mem, hb, 0); err != nil {
		return efault(fmt.Errorf("IPT_SO_SET_REPLACE: %w", err))
	}
	h, _ := ipt.ParseReplaceHeader(hb)
	if name := h.TableName(); name != FilterTable {
		return notOurs(name)
	}
	if err := ipt.CheckReplaceHeader(&h, optlen); err != nil {
		return errnoResult(fmt.Errorf("IPT_SO_SET_REPLACE: %w", err))
	}
	entries, err := readAll(mem, ipt.ReplaceSize, uint64(h.Size))
	if err != nil {
		return efault(fmt.Errorf("IPT_SO_SET_REPLACE: %w", err))
	}
	t, err := ipt.Translate(&h, entries)
	if err != nil {
		return errnoResult(fmt.Errorf("IPT_SO_SET_REPLACE: %w", err))
	}
	if err := ipt.CheckNumCounters(h.NumCounters); err != nil {
		return errnoResult(fmt.Errorf("IPT_SO_SET_REPLACE: %w", err))
	}
	if h.ValidHooks != ipt.FilterValidHooks {
		return einval("IPT_SO_SET_REPLACE: valid_hooks %#x, the filter table has %#x", h.ValidHooks, ipt.FilterValidHooks)
	}

	s.mu.Lock()
	st := s.stateLocked(netns)
	if n := uint32(st.table.NumEntries()); h.NumCounters != n {
		s.mu.Unlock()
		return -int32(unix.EAGAIN), fmt.Sprintf("IPT_SO_SET_REPLACE: num_counters %d, but the table has %d entries", h.NumCounters, n)
	}
	var replaced []ipt.Counters
	if s.OnReplace != nil {
		var err error
		if replaced, err = s.OnReplace(netns, t); err != nil {
			s.mu.Unlock()
			errno := unix.EINVAL
			var e unix.Errno
			if errors.As(err, &e) && e != 0 {
				errno = e
			}
			return -int32(errno), fmt.Sprintf("IPT_SO_SET_REPLACE: table not installed: %v", err)
		}
	}
	old := st.counters
	for i := range old {
		if i < len(replaced) {
			old[i].Pcnt += replaced[i].Pcnt
			old[i].Bcnt += replaced[i].Bcnt
		}
	}
	st.table = t
	st.counters = make([]ipt.Counters, t.NumEntries())
	s.changedLocked(netns, st)
	s.mu.Unlock()

	if err := mem.WriteCounters(h.Counters, ipt.EncodeCounters(old)); err != nil {
		// As ip_tables: the new table is in place, the copy failure is
		// only worth a warning.
		return 0, fmt.Sprintf("IPT_SO_SET_REPLACE: counters copy to user failed while replacing table: %v", err)
	}
	return 0, ""
}

// addCounters is ip_tables' do_add_counters with xt_copy_counters: optlen
// must be the xt_counters_info header plus exactly num_counters counters,
// and num_counters the table's number of entries; each counter is added to
// its entry's.
func (s *Tables) addCounters(netns uint64, mem Memory) (int32, string) {
	optlen := setLen(mem)
	if optlen <= ipt.CountersInfoSize {
		return einval("IPT_SO_SET_ADD_COUNTERS: optlen %d leaves no room for counters", optlen)
	}
	hb := make([]byte, ipt.CountersInfoSize)
	if err := readFull(mem, hb, 0); err != nil {
		return efault(fmt.Errorf("IPT_SO_SET_ADD_COUNTERS: %w", err))
	}
	name, num, _ := ipt.ParseCountersInfo(hb)
	if name != FilterTable {
		return notOurs(name)
	}
	if size := uint64(num) * ipt.CountersSize; size != optlen-ipt.CountersInfoSize {
		return einval("IPT_SO_SET_ADD_COUNTERS: %d counters need %d bytes, optlen leaves %d", num, size, optlen-ipt.CountersInfoSize)
	}
	raw, err := readAll(mem, ipt.CountersInfoSize, optlen-ipt.CountersInfoSize)
	if errors.Is(err, ErrNotCopied) {
		// More counters than the module copies, which is more than
		// any table has entries: ip_tables copies them, then finds
		// the number wrong.
		return einval("IPT_SO_SET_ADD_COUNTERS: %d counters, more than any table has entries", num)
	}
	if err != nil {
		return efault(fmt.Errorf("IPT_SO_SET_ADD_COUNTERS: %w", err))
	}
	add := ipt.DecodeCounters(raw)

	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stateLocked(netns)
	if n := uint32(st.table.NumEntries()); num != n {
		return einval("IPT_SO_SET_ADD_COUNTERS: %d counters, but the table has %d entries", num, n)
	}
	for i := range st.counters {
		st.counters[i].Pcnt += add[i].Pcnt
		st.counters[i].Bcnt += add[i].Bcnt
	}
	s.changedLocked(netns, st)
	return 0, ""
}
