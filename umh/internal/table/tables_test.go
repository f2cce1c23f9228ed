package table

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

func getInfo(t *testing.T, s *Tables, ns uint64) ipt.GetInfo {
	t.Helper()
	mem := newMem(named("filter", ipt.GetInfoSize))
	if status, reason := s.Sockopt(ns, ipt.SoGetInfo, false, mem); status != 0 {
		t.Fatalf("GET_INFO: %d %s", status, reason)
	}
	g, _ := ipt.ParseGetInfo(mem.buf)
	return g
}

func getEntries(t *testing.T, s *Tables, ns uint64) *ipt.Table {
	t.Helper()
	g := getInfo(t, s, ns)
	mem := newMem(append(ipt.MarshalGetEntries("filter", g.Size), make([]byte, g.Size)...))
	if status, reason := s.Sockopt(ns, ipt.SoGetEntries, false, mem); status != 0 {
		t.Fatalf("GET_ENTRIES: %d %s", status, reason)
	}
	h := ipt.ReplaceHeader{ValidHooks: g.ValidHooks, NumEntries: g.NumEntries, Size: g.Size, HookEntry: g.HookEntry, Underflow: g.Underflow}
	tb, err := ipt.Translate(&h, mem.buf[ipt.GetEntriesSize:])
	if err != nil {
		t.Fatalf("GET_ENTRIES returned a table ip_tables would refuse: %v", err)
	}
	return tb
}

func TestOtherTablesAreLeftToIPTables(t *testing.T) {
	s := New()
	for _, name := range []string{"nat", "mangle", "raw", "security", "broute", "", "filte", "filter2", "FILTER"} {
		calls := []struct {
			cmd   uint32
			isSet bool
			buf   []byte
		}{
			{ipt.SoGetInfo, false, named(name, ipt.GetInfoSize)},
			{ipt.SoGetEntries, false, append(ipt.MarshalGetEntries(name, 8), make([]byte, 8)...)},
			{ipt.SoSetReplace, true, replaceNamed(t, name)},
			{ipt.SoSetAddCounters, true, ipt.MarshalCountersInfo(name, make([]ipt.Counters, 4))},
		}
		for _, c := range calls {
			status, reason := s.Sockopt(1, c.cmd, c.isSet, newMem(c.buf))
			if status != eNOPROTOOPT || !strings.Contains(reason, "ip_tables") {
				t.Errorf("table %q cmd %d set %v: %d %q", name, c.cmd, c.isSet, status, reason)
			}
		}
	}
	if len(s.Namespaces()) != 0 {
		t.Errorf("other tables created state: %v", s.Namespaces())
	}
	// Extensions bpfilter does not know: ip_tables answers (see getRevision).
	for _, c := range []struct {
		cmd  uint32
		name string
	}{{ipt.SoGetRevisionMatch, "quota"}, {ipt.SoGetRevisionTarget, "MARK"}, {ipt.SoGetRevisionTarget, "tcp"}} {
		if status, _ := s.Sockopt(1, c.cmd, false, newMem(ipt.MarshalGetRevision(c.name, 0))); status != eNOPROTOOPT {
			t.Errorf("revision of %q: %d", c.name, status)
		}
	}
}

func replaceNamed(t *testing.T, name string) []byte {
	b := initialBlob(4)
	copy(b[:ipt.TableMaxNameLen], make([]byte, ipt.TableMaxNameLen))
	copy(b, name)
	return b
}

func TestUnknownCommands(t *testing.T) {
	s := New()
	for _, c := range []struct {
		cmd   uint32
		isSet bool
	}{{63, false}, {68, false}, {66, true}, {0, true}} {
		if status, _ := s.Sockopt(1, c.cmd, c.isSet, newMem(make([]byte, 128))); status != eINVAL {
			t.Errorf("cmd %d set %v: %d", c.cmd, c.isSet, status)
		}
	}
}

func TestFaults(t *testing.T) {
	blob := replaceBlob(t, 4)
	ge := append(ipt.MarshalGetEntries("filter", 632), make([]byte, 632)...)
	tests := []struct {
		name  string
		cmd   uint32
		isSet bool
		mem   *fakeMem
	}{
		{"GET_INFO unmapped", ipt.SoGetInfo, false, &fakeMem{buf: make([]byte, 10), optlen: ipt.GetInfoSize}},
		{"GET_INFO read-only", ipt.SoGetInfo, false, &fakeMem{buf: named("filter", ipt.GetInfoSize), optlen: ipt.GetInfoSize, readOnly: true}},
		{"GET_ENTRIES header unmapped", ipt.SoGetEntries, false, &fakeMem{buf: ge[:20], optlen: len(ge)}},
		{"GET_ENTRIES entries unmapped", ipt.SoGetEntries, false, &fakeMem{buf: ge[:300], optlen: len(ge)}},
		{"GET_ENTRIES read-only", ipt.SoGetEntries, false, &fakeMem{buf: ge, optlen: len(ge), readOnly: true}},
		{"GET_REVISION unmapped", ipt.SoGetRevisionMatch, false, &fakeMem{buf: nil, optlen: ipt.GetRevisionSize}},
		{"REPLACE header unmapped", ipt.SoSetReplace, true, &fakeMem{buf: blob[:50], optlen: len(blob)}},
		{"REPLACE entries unmapped", ipt.SoSetReplace, true, &fakeMem{buf: blob[:len(blob)-1], optlen: len(blob)}},
		{"ADD_COUNTERS header unmapped", ipt.SoSetAddCounters, true, &fakeMem{buf: nil, optlen: 40 + 64}},
		{"ADD_COUNTERS counters unmapped", ipt.SoSetAddCounters, true,
			&fakeMem{buf: ipt.MarshalCountersInfo("filter", make([]ipt.Counters, 4))[:60], optlen: 40 + 64}},
	}
	for _, tt := range tests {
		s := New()
		status, reason := s.Sockopt(1, tt.cmd, tt.isSet, tt.mem)
		if status != eFAULT || reason == "" {
			t.Errorf("%s: %d %q", tt.name, status, reason)
		}
	}
}

// TestNoLargeAllocationForClaims: a caller that claims a huge buffer but
// has not mapped it fails with EFAULT, without making the umh allocate the
// claim.
func TestNoLargeAllocationForClaims(t *testing.T) {
	h := ipt.ReplaceHeader{ValidHooks: ipt.FilterValidHooks, NumEntries: 4, Size: 400 << 20, NumCounters: 4}
	copy(h.Name[:], "filter")
	big := uint64(h.Size) + ipt.ReplaceSize
	addc := ipt.MarshalCountersInfo("filter", nil)
	binary.LittleEndian.PutUint32(addc[32:], 0x08000000)
	for _, c := range []struct {
		name string
		cmd  uint32
		mem  *fakeMem
	}{
		{"replace", ipt.SoSetReplace, &fakeMem{buf: h.Marshal(), optlen: int(big)}},
		{"add counters", ipt.SoSetAddCounters, &fakeMem{buf: addc, optlen: 40 + 0x08000000*16}},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		status, _ := New().Sockopt(1, c.cmd, true, c.mem)
		runtime.ReadMemStats(&after)
		if status != eFAULT {
			t.Errorf("%s: status %d", c.name, status)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 4*firstChunk {
			t.Errorf("%s: allocated %d bytes for an unmapped claim", c.name, d)
		}
	}
	// Beyond xt_alloc_table_info's limit: refused before reading at all.
	h.Size = ipt.MaxTableSize
	mem := &fakeMem{buf: h.Marshal(), optlen: int(uint32(h.Size + 96))}
	if status, _ := New().Sockopt(1, ipt.SoSetReplace, true, mem); status != eNOMEM {
		t.Errorf("size at the limit: %d", status)
	}
}

func TestReplaceAndCounters(t *testing.T) {
	s := New()
	const ns = 7
	blob := replaceBlob(t, 4)
	binary.LittleEndian.PutUint64(blob[88:], 0x7fff12340000)
	mem := newMem(blob)
	if status, reason := s.Sockopt(ns, ipt.SoSetReplace, true, mem); status != 0 {
		t.Fatalf("replace: %d %s", status, reason)
	}
	// The old table's counters (all zero) went to the caller's pointer.
	if len(mem.counters) != 1 || len(mem.counters[0]) != 4*ipt.CountersSize || mem.addrs[0] != 0x7fff12340000 {
		t.Fatalf("old counters: %x at %x", mem.counters, mem.addrs)
	}
	// The counters in the blob are ignored: the new table starts at zero.
	_, c := s.Current(ns)
	for i, x := range c {
		if x != (ipt.Counters{}) {
			t.Fatalf("entry %d starts with %+v", i, x)
		}
	}
	add := make([]ipt.Counters, replaceEntries)
	add[0] = ipt.Counters{Pcnt: 3, Bcnt: 300}
	if status, reason := s.Sockopt(ns, ipt.SoSetAddCounters, true, newMem(ipt.MarshalCountersInfo("filter", add))); status != 0 {
		t.Fatalf("add counters: %d %s", status, reason)
	}
	if got := getEntries(t, s, ns).Entries[0].Counters; got != add[0] {
		t.Fatalf("GET_ENTRIES counters %+v", got)
	}
	// GET_ENTRIES returns the hooks in comefrom, not the caller's value.
	tb := getEntries(t, s, ns)
	if web := tb.Chain("web").Rules[0]; web.Comefrom != 1<<ipt.HookLocalIn {
		t.Fatalf("comefrom of web's rule: %#x", web.Comefrom)
	}
	// A replace hands the counters back and starts again from zero.
	mem = newMem(initialBlob(replaceEntries))
	if status, reason := s.Sockopt(ns, ipt.SoSetReplace, true, mem); status != 0 {
		t.Fatalf("replace: %d %s", status, reason)
	}
	if old := ipt.DecodeCounters(mem.counters[0]); len(old) != replaceEntries || old[0] != add[0] {
		t.Fatalf("old counters %+v", old)
	}
	if _, c := s.Current(ns); c[0] != (ipt.Counters{}) {
		t.Fatalf("counters after replace %+v", c[0])
	}
}

// TestLargeTable: a table of several MiB goes through the chunked read and
// comes back from GET_ENTRIES as installed.
func TestLargeTable(t *testing.T) {
	b := ipt.NewFilterBuilder()
	if err := b.NewChain("many"); err != nil {
		t.Fatal(err)
	}
	if err := b.Append("INPUT", ipt.RuleSpec{Jump: "many"}); err != nil {
		t.Fatal(err)
	}
	const n = 20000
	for i := 0; i < n; i++ {
		m := ipt.NewMatch(&ipt.TCP{SrcPorts: [2]uint16{0, 0xFFFF}, DstPorts: [2]uint16{uint16(i), uint16(i)}})
		if err := b.Append("many", ipt.RuleSpec{IP: ipt.IP{Proto: ipt.ProtoTCP}, Matches: []ipt.Match{m}, Jump: "ACCEPT"}); err != nil {
			t.Fatal(err)
		}
	}
	blob, err := b.Replace(4, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) < 16*firstChunk {
		t.Fatalf("blob of %d bytes does not need several chunks", len(blob))
	}
	s := New()
	if status, reason := s.Sockopt(1, ipt.SoSetReplace, true, newMem(blob)); status != 0 {
		t.Fatalf("%d %s", status, reason)
	}
	tb := getEntries(t, s, 1)
	if tb.NumEntries() != n+7 || len(tb.Chain("many").Rules) != n {
		t.Fatalf("%d entries", tb.NumEntries())
	}
	want, _ := ipt.Decode(blob)
	if got, w := tb.KernelEntries(nil), want.Table.KernelEntries(nil); string(got) != string(w) {
		t.Fatal("GET_ENTRIES differs from what was installed")
	}
}

func TestReplaceCountersCopyFails(t *testing.T) {
	s := New()
	mem := newMem(replaceBlob(t, 4))
	mem.failCount = true
	status, reason := s.Sockopt(1, ipt.SoSetReplace, true, mem)
	if status != 0 || !strings.Contains(reason, "counters copy to user failed") {
		t.Fatalf("%d %q", status, reason)
	}
	if tb, _ := s.Current(1); tb.NumEntries() != replaceEntries {
		t.Fatalf("the new table is not in place: %d entries", tb.NumEntries())
	}
}

func TestReplaceReasons(t *testing.T) {
	s := New()
	status, reason := s.Sockopt(1, ipt.SoSetReplace, true, newMem(unknownMatchBlob(t)))
	if status != eNOENT || !strings.Contains(reason, `match "nosuchmatch" is not supported by bpfilter`) {
		t.Fatalf("%d %q", status, reason)
	}
	status, reason = s.Sockopt(1, ipt.SoSetReplace, true, newMem(loopBlob(t)))
	if status != eLOOP || !strings.Contains(reason, "loop") {
		t.Fatalf("%d %q", status, reason)
	}
}

func TestOnReplace(t *testing.T) {
	s := New()
	var got []uint64
	fail := error(nil)
	s.OnReplace = func(netns uint64, tb *ipt.Table) ([]ipt.Counters, error) {
		got = append(got, netns)
		if tb.Chain("web") == nil {
			t.Errorf("OnReplace got a table without chain web")
		}
		return []ipt.Counters{{Pcnt: 3, Bcnt: 300}}, fail
	}
	for _, c := range []struct {
		err  error
		want int32
	}{
		{fmt.Errorf("load program: %w", unix.E2BIG), -int32(unix.E2BIG)},
		{errors.New("codegen: not supported"), eINVAL},
	} {
		fail = c.err
		status, reason := s.Sockopt(5, ipt.SoSetReplace, true, newMem(replaceBlob(t, 4)))
		if status != c.want || !strings.Contains(reason, c.err.Error()) {
			t.Errorf("OnReplace %v: %d %q", c.err, status, reason)
		}
		if tb, _ := s.Current(5); tb.NumEntries() != 4 {
			t.Errorf("the old table did not stay: %d entries", tb.NumEntries())
		}
	}
	fail = nil
	mem := newMem(replaceBlob(t, 4))
	if status, reason := s.Sockopt(5, ipt.SoSetReplace, true, mem); status != 0 {
		t.Fatalf("%d %s", status, reason)
	}
	// The old counters handed back include what the replaced table counted.
	if old := ipt.DecodeCounters(mem.counters[0]); old[0] != (ipt.Counters{Pcnt: 3, Bcnt: 300}) {
		t.Fatalf("old counters %+v", old)
	}
	if len(got) != 3 || got[2] != 5 {
		t.Fatalf("OnReplace calls %v", got)
	}
	// Refused blobs never reach the hook.
	s.Sockopt(5, ipt.SoSetReplace, true, newMem(loopBlob(t)))
	if len(got) != 3 {
		t.Fatalf("OnReplace called for a refused blob")
	}
}

func TestNamespacesAndForget(t *testing.T) {
	s := New()
	if status, _ := s.Sockopt(1, ipt.SoSetReplace, true, newMem(replaceBlob(t, 4))); status != 0 {
		t.Fatal(status)
	}
	if n := getInfo(t, s, 1).NumEntries; n != replaceEntries {
		t.Fatalf("ns 1: %d entries", n)
	}
	if n := getInfo(t, s, 2).NumEntries; n != 4 {
		t.Fatalf("ns 2 is not fresh: %d entries", n)
	}
	if len(s.Namespaces()) != 2 {
		t.Fatalf("namespaces %v", s.Namespaces())
	}
	s.Forget(1)
	if len(s.Namespaces()) != 1 {
		t.Fatalf("namespaces after Forget %v", s.Namespaces())
	}
	if n := getInfo(t, s, 1).NumEntries; n != 4 {
		t.Fatalf("ns 1 after Forget: %d entries", n)
	}
	// A replace computed against the forgotten table is now stale.
	if status, _ := s.Sockopt(1, ipt.SoSetReplace, true, newMem(replaceBlob(t, replaceEntries))); status != eAGAIN {
		t.Fatalf("stale replace: %d", status)
	}
}

func TestLiveCounters(t *testing.T) {
	s := New()
	live := func(netns uint64, tb *ipt.Table) []ipt.Counters {
		return []ipt.Counters{{Pcnt: 1, Bcnt: 60}, {Pcnt: 2, Bcnt: 120}}
	}
	s.LiveCounters = live
	// What the replaced table counted comes back from OnReplace, which
	// reads it after the switch.
	s.OnReplace = func(netns uint64, tb *ipt.Table) ([]ipt.Counters, error) { return live(netns, tb), nil }
	add := []ipt.Counters{{Pcnt: 10, Bcnt: 1000}, {}, {}, {}}
	if status, _ := s.Sockopt(1, ipt.SoSetAddCounters, true, newMem(ipt.MarshalCountersInfo("filter", add))); status != 0 {
		t.Fatal(status)
	}
	tb := getEntries(t, s, 1)
	if c := tb.Entries[0].Counters; c != (ipt.Counters{Pcnt: 11, Bcnt: 1060}) {
		t.Fatalf("entry 0: %+v", c)
	}
	if c := tb.Entries[2].Counters; c != (ipt.Counters{}) {
		t.Fatalf("entry 2: %+v", c)
	}
	mem := newMem(replaceBlob(t, 4))
	if status, _ := s.Sockopt(1, ipt.SoSetReplace, true, mem); status != 0 {
		t.Fatal(status)
	}
	if old := ipt.DecodeCounters(mem.counters[0]); old[1] != (ipt.Counters{Pcnt: 2, Bcnt: 120}) {
		t.Fatalf("old counters %+v", old)
	}
}

func TestOnChangeAndRestore(t *testing.T) {
	s := New()
	type change struct {
		netns uint64
		n     int
		kept0 ipt.Counters
	}
	var got []change
	s.OnChange = func(netns uint64, tb *ipt.Table, kept []ipt.Counters) {
		got = append(got, change{netns, tb.NumEntries(), kept[0]})
	}
	if status, _ := s.Sockopt(3, ipt.SoSetReplace, true, newMem(replaceBlob(t, 4))); status != 0 {
		t.Fatal(status)
	}
	add := make([]ipt.Counters, replaceEntries)
	add[0] = ipt.Counters{Pcnt: 2, Bcnt: 80}
	if status, _ := s.Sockopt(3, ipt.SoSetAddCounters, true, newMem(ipt.MarshalCountersInfo("filter", add))); status != 0 {
		t.Fatal(status)
	}
	// A refused call changes nothing and says nothing.
	s.Sockopt(3, ipt.SoSetReplace, true, newMem(loopBlob(t)))
	want := []change{{3, replaceEntries, ipt.Counters{}}, {3, replaceEntries, add[0]}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("OnChange calls %+v, want %+v", got, want)
	}

	// A new Tables takes the state back, as a restarted umh does.
	tb, kept := s.Current(3)
	s2 := New()
	if err := s2.Restore(3, tb, kept); err != nil {
		t.Fatal(err)
	}
	if got := getEntries(t, s2, 3); got.Entries[0].Counters != add[0] || got.NumEntries() != replaceEntries {
		t.Fatalf("restored table: %d entries, first counters %+v", got.NumEntries(), got.Entries[0].Counters)
	}
	if err := s2.Restore(4, tb, kept[:1]); err == nil {
		t.Fatal("Restore took counters that do not match the entries")
	}
}
