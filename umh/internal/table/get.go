package table

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

func efault(err error) (int32, string) {
	return -int32(unix.EFAULT), err.Error()
}

func einval(format string, args ...any) (int32, string) {
	return -int32(unix.EINVAL), fmt.Sprintf(format, args...)
}

// getInfo is ip_tables' get_info: optlen must be sizeof(struct
// ipt_getinfo); the whole struct is written back.
func (s *Tables) getInfo(netns uint64, mem Memory) (int32, string) {
	if l := getLen(mem); l != ipt.GetInfoSize {
		return einval("IPT_SO_GET_INFO: optlen %d, want %d", l, ipt.GetInfoSize)
	}
	var name [ipt.TableMaxNameLen]byte
	if err := readFull(mem, name[:], 0); err != nil {
		return efault(fmt.Errorf("IPT_SO_GET_INFO: %w", err))
	}
	tn := ipt.TableName(name[:])
	if tn != FilterTable {
		return notOurs(tn)
	}
	s.mu.Lock()
	info := s.stateLocked(netns).table.Info()
	s.mu.Unlock()
	if err := writeFull(mem, info.Marshal(), 0); err != nil {
		return efault(fmt.Errorf("IPT_SO_GET_INFO: %w", err))
	}
	return 0, ""
}

// getEntries is ip_tables' get_entries: optlen must be sizeof(struct
// ipt_get_entries) plus the size the caller names, which must be the
// table's (EAGAIN otherwise: the table changed since GET_INFO). The
// entries are written after the header, as copy_entries_to_user writes
// them: the caller's buffer is read first because some of its bytes stay
// as they are (see ipt.Table.WriteEntries).
func (s *Tables) getEntries(netns uint64, mem Memory) (int32, string) {
	l := getLen(mem)
	if l < ipt.GetEntriesSize {
		return einval("IPT_SO_GET_ENTRIES: optlen %d is shorter than ipt_get_entries", l)
	}
	hdr := make([]byte, ipt.GetEntriesSize)
	if err := readFull(mem, hdr, 0); err != nil {
		return efault(fmt.Errorf("IPT_SO_GET_ENTRIES: %w", err))
	}
	name, size, _ := ipt.ParseGetEntries(hdr)
	if l != ipt.GetEntriesSize+int64(size) {
		return einval("IPT_SO_GET_ENTRIES: optlen %d, but ipt_get_entries plus size %d is %d", l, size, ipt.GetEntriesSize+int64(size))
	}
	if name != FilterTable {
		return notOurs(name)
	}
	s.mu.Lock()
	st := s.stateLocked(netns)
	t, counters := st.table, s.countersLocked(netns, st)
	s.mu.Unlock()
	if size != t.Size {
		return -int32(unix.EAGAIN), fmt.Sprintf("IPT_SO_GET_ENTRIES: size %d, but the table has %d", size, t.Size)
	}
	for _, w := range entryWrites(t, counters) {
		if err := writeFull(mem, w.data, ipt.GetEntriesSize+int64(w.off)); err != nil {
			return efault(fmt.Errorf("IPT_SO_GET_ENTRIES: %w", err))
		}
	}
	return 0, ""
}

// write is a run of bytes that GET_ENTRIES writes, at off in the entries.
type write struct {
	off  int
	data []byte
}

// entryWrites are the runs of bytes that copy_entries_to_user writes:
// ipt.Table.WriteEntries leaves some bytes of the caller's buffer as they
// were, so it is laid over two buffers, one of zeros and one of 0xFF, and
// the bytes that come out the same in both are those it writes. The
// module writes only those into the caller's buffer.
func entryWrites(t *ipt.Table, counters []ipt.Counters) []write {
	zeros, ones := make([]byte, t.Size), make([]byte, t.Size)
	for i := range ones {
		ones[i] = 0xFF
	}
	// WriteEntries fails only on a dst of the wrong size.
	t.WriteEntries(zeros, counters)
	t.WriteEntries(ones, counters)
	var out []write
	for i := 0; i < len(zeros); {
		if zeros[i] != ones[i] {
			i++
			continue
		}
		j := i
		for j < len(zeros) && zeros[j] == ones[j] {
			j++
		}
		out = append(out, write{off: i, data: zeros[i:j]})
		i = j
	}
	return out
}

// getRevision answers IPT_SO_GET_REVISION_MATCH/TARGET like ip_tables
// (optlen must be sizeof(struct xt_get_revision); the answer is
// xt_find_revision's) for the extensions bpfilter accepts. Success is 0,
// not the revision xt_find_revision found: ip_getsockopt replaces
// ip_tables' non-negative result with put_user()'s 0, and the bpfilter hook
// returns the umh's status to the caller as it is.
//
// For a name bpfilter does not know at all it answers -ENOPROTOOPT rather
// than ip_tables' -ENOENT. The question is not about a table: iptables
// asks it before it builds rules for any table, nat and mangle included,
// and ip_tables (to which -ENOPROTOOPT hands the call) knows the
// extensions those tables use. Answering -ENOENT would make iptables
// refuse such extensions everywhere; with -ENOPROTOOPT it can still use
// them in the tables ip_tables serves, and a filter rule that uses one is
// refused by IPT_SO_SET_REPLACE with -ENOENT and a reason naming it. If
// ip_tables is not loaded the kernel answers -ENOPROTOOPT itself, which
// iptables reads as "revision 0 only".
func getRevision(target bool, mem Memory) (int32, string) {
	if l := getLen(mem); l != ipt.GetRevisionSize {
		return einval("IPT_SO_GET_REVISION: optlen %d, want %d", l, ipt.GetRevisionSize)
	}
	buf := make([]byte, ipt.GetRevisionSize)
	if err := readFull(mem, buf, 0); err != nil {
		return efault(fmt.Errorf("IPT_SO_GET_REVISION: %w", err))
	}
	name, rev, _ := ipt.ParseGetRevision(buf)
	kind := "match"
	if target {
		kind = "target"
	}
	_, errno := ipt.FindRevision(name, rev, target)
	switch errno {
	case 0:
		return 0, ""
	case unix.ENOENT:
		return -int32(unix.ENOPROTOOPT), fmt.Sprintf("%s %q is not bpfilter's: left to ip_tables", kind, name)
	}
	return -int32(errno), fmt.Sprintf("%s %q revision %d is not supported", kind, name, rev)
}
