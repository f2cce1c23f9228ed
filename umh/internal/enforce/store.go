package enforce

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bpfilter/bpfilter/umh/internal/attach"
	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// store keeps one file per namespace with an enforced table: the table,
// its kept counters and the attach state, for the umh that is started
// after this one dies. The live counters are not in it: they stay in the
// programs' maps, which the filters keep alive.
type store struct{ dir string }

const storeSuffix = ".netns"

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("enforce: state directory: %w", err)
	}
	return &store{dir: dir}, nil
}

// record is one namespace's file: a little-endian u32 length, the JSON of
// the record without Entries and Kept, then the entries blob and the kept
// counters as ipt_counters (binary: 10,000 rules take a few milliseconds).
type record struct {
	Netns      uint32
	ValidHooks uint32
	HookEntry  [ipt.NumHooks]uint32
	Underflow  [ipt.NumHooks]uint32
	NumEntries uint32
	Size       uint32
	Attach     attach.State
	Entries    []byte         `json:"-"` // the entries blob, as GET_ENTRIES lays it out
	Kept       []ipt.Counters `json:"-"`
}

func (s *store) path(netns uint32) string {
	return filepath.Join(s.dir, strconv.FormatUint(uint64(netns), 10)+storeSuffix)
}

func (s *store) save(netns uint32, t *ipt.Table, kept []ipt.Counters, as attach.State) error {
	r := record{Netns: netns, ValidHooks: t.ValidHooks, HookEntry: t.HookEntry,
		Underflow: t.Underflow, NumEntries: uint32(t.NumEntries()), Size: t.Size, Attach: as}
	hdr, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b := make([]byte, 4+len(hdr)+int(t.Size), 4+len(hdr)+int(t.Size)+len(kept)*ipt.CountersSize)
	binary.LittleEndian.PutUint32(b, uint32(len(hdr)))
	copy(b[4:], hdr)
	if err := t.WriteEntries(b[4+len(hdr):], nil); err != nil {
		return err
	}
	b = append(b, ipt.EncodeCounters(kept)...)
	tmp := s.path(netns) + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.path(netns))
}

func decodeRecord(b []byte) (*record, error) {
	if len(b) < 4 {
		return nil, errors.New("truncated")
	}
	n := uint64(binary.LittleEndian.Uint32(b))
	if uint64(len(b)-4) < n {
		return nil, errors.New("truncated header")
	}
	var r record
	if err := json.Unmarshal(b[4:4+n], &r); err != nil {
		return nil, err
	}
	rest := b[4+n:]
	want := uint64(r.Size) + uint64(r.NumEntries)*ipt.CountersSize
	if uint64(len(rest)) != want {
		return nil, fmt.Errorf("%d bytes of entries and counters, want %d", len(rest), want)
	}
	r.Entries = rest[:r.Size]
	r.Kept = ipt.DecodeCounters(rest[r.Size:])
	return &r, nil
}

func (s *store) remove(netns uint32) {
	os.Remove(s.path(netns))
}

// load reads every record; a file that does not read back is removed and
// reported.
func (s *store) load() ([]*record, []error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, []error{err}
	}
	var out []*record
	var errs []error
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), storeSuffix) {
			continue
		}
		p := filepath.Join(s.dir, de.Name())
		b, err := os.ReadFile(p)
		var r *record
		if err == nil {
			r, err = decodeRecord(b)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", de.Name(), err))
			os.Remove(p)
			continue
		}
		out = append(out, r)
	}
	return out, errs
}

// table translates the record's entries again, as a replace would.
func (r *record) table() (*ipt.Table, error) {
	h := ipt.ReplaceHeader{ValidHooks: r.ValidHooks, NumEntries: r.NumEntries,
		Size: uint32(len(r.Entries)), HookEntry: r.HookEntry, Underflow: r.Underflow, NumCounters: r.NumEntries}
	copy(h.Name[:], "filter")
	t, err := ipt.Translate(&h, r.Entries)
	if err != nil {
		return nil, err
	}
	if len(r.Kept) != t.NumEntries() {
		return nil, errors.New("counters do not match the entries")
	}
	return t, nil
}
