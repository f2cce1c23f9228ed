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

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// store keeps one file per namespace and gen: the table whose programs
// were handed to the module under that gen, and its kept counters, for
// the umh that is started after this one dies. A namespace has one file,
// or two while an Install is between writing the new one and the module
// taking its programs. The live counters are not in it: they stay in the
// programs' maps, which the module keeps alive.
type store struct{ dir string }

const (
	storeSuffix = ".netns"
	tmpSuffix   = ".new"
)

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("enforce: state directory: %w", err)
	}
	return &store{dir: dir}, nil
}

// record is one file, named "<netns>-<gen>.netns": a little-endian u32
// length, the JSON of the record without Entries and Kept, then the
// entries blob (as GET_ENTRIES lays it out) and the kept counters as
// ipt_counters (binary: 10,000 rules take a few milliseconds).
type record struct {
	Netns      uint64 // net_cookie
	Gen        uint64 // as given to the module with the programs
	ValidHooks uint32
	HookEntry  [ipt.NumHooks]uint32
	Underflow  [ipt.NumHooks]uint32
	NumEntries uint32
	Size       uint32
	Entries    []byte         `json:"-"`
	Kept       []ipt.Counters `json:"-"`
}

func (s *store) name(netns, gen uint64) string {
	return strconv.FormatUint(netns, 10) + "-" + strconv.FormatUint(gen, 10) + storeSuffix
}

func (s *store) path(netns, gen uint64) string { return filepath.Join(s.dir, s.name(netns, gen)) }

// parseName reads "<netns>-<gen>.netns".
func parseName(name string) (netns, gen uint64, ok bool) {
	base, found := strings.CutSuffix(name, storeSuffix)
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(base, "-")
	if !found {
		return 0, 0, false
	}
	netns, err1 := strconv.ParseUint(a, 10, 64)
	gen, err2 := strconv.ParseUint(b, 10, 64)
	return netns, gen, err1 == nil && err2 == nil
}

// save writes the record of (netns, gen), atomically (a rename).
func (s *store) save(netns, gen uint64, t *ipt.Table, kept []ipt.Counters) error {
	if len(kept) != t.NumEntries() {
		return fmt.Errorf("%d kept counters for %d entries", len(kept), t.NumEntries())
	}
	r := record{Netns: netns, Gen: gen, ValidHooks: t.ValidHooks, HookEntry: t.HookEntry,
		Underflow: t.Underflow, NumEntries: uint32(t.NumEntries()), Size: t.Size}
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
	tmp := s.path(netns, gen) + tmpSuffix
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, s.path(netns, gen))
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

func (s *store) remove(netns, gen uint64) { os.Remove(s.path(netns, gen)) }

// removeOthers removes the records of netns but that of gen (0: all).
func (s *store) removeOthers(netns, gen uint64) {
	des, _ := os.ReadDir(s.dir)
	for _, de := range des {
		if n, g, ok := parseName(de.Name()); ok && n == netns && g != gen {
			os.Remove(filepath.Join(s.dir, de.Name()))
		}
	}
}

// maxGen is the largest gen a record has.
func (s *store) maxGen() uint64 {
	var m uint64
	des, _ := os.ReadDir(s.dir)
	for _, de := range des {
		if _, g, ok := parseName(de.Name()); ok {
			m = max(m, g)
		}
	}
	return m
}

// load reads every record. A file that does not read back, or whose name
// and contents disagree, is removed and reported; so are the leftovers of
// a write that did not finish.
func (s *store) load() ([]*record, []error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, []error{err}
	}
	var out []*record
	var errs []error
	for _, de := range des {
		p := filepath.Join(s.dir, de.Name())
		if strings.HasSuffix(de.Name(), storeSuffix+tmpSuffix) {
			os.Remove(p)
			continue
		}
		netns, gen, ok := parseName(de.Name())
		if !ok {
			continue
		}
		b, err := os.ReadFile(p)
		var r *record
		if err == nil {
			r, err = decodeRecord(b)
		}
		if err == nil && (r.Netns != netns || r.Gen != gen) {
			err = fmt.Errorf("holds netns %d gen %d", r.Netns, r.Gen)
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
