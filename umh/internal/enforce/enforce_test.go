package enforce

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/datapath"
	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/bpfilter/bpfilter/umh/internal/klog"
	"github.com/bpfilter/bpfilter/umh/internal/kmodctl"
	"github.com/cilium/ebpf"
)

// dropUDP: INPUT drops udp, and jumps to "web", which accepts tcp.
func dropUDP(t *testing.T) *ipt.Table {
	t.Helper()
	b := ipt.NewFilterBuilder()
	if err := b.NewChain("web"); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		chain string
		spec  ipt.RuleSpec
	}{
		{"INPUT", ipt.RuleSpec{IP: ipt.IP{Proto: ipt.ProtoUDP}, Jump: "DROP"}},
		{"INPUT", ipt.RuleSpec{Jump: "web"}},
		{"web", ipt.RuleSpec{IP: ipt.IP{Proto: ipt.ProtoTCP}, Jump: "ACCEPT"}},
	} {
		if err := b.Append(r.chain, r.spec); err != nil {
			t.Fatal(err)
		}
	}
	return translate(t, b)
}

// queueUDP: INPUT sends udp to NFQUEUE 5 with --queue-bypass.
func queueUDP(t *testing.T) *ipt.Table {
	t.Helper()
	b := ipt.NewFilterBuilder()
	q := (&ipt.NFQ{Revision: 3, QueueNum: 5, QueuesTotal: 1, Flags: ipt.NFQFlagBypass}).Target()
	if err := b.Append("INPUT", ipt.RuleSpec{IP: ipt.IP{Proto: ipt.ProtoUDP}, Target: &q}); err != nil {
		t.Fatal(err)
	}
	return translate(t, b)
}

// translate lays b out and validates it, as a replace would.
func translate(t *testing.T, b *ipt.Builder) *ipt.Table {
	t.Helper()
	blob, err := b.Replace(4, 0)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ipt.ParseReplaceHeader(blob)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := ipt.Translate(&h, blob[ipt.ReplaceSize:])
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func entries(t *testing.T, tb *ipt.Table) []byte {
	t.Helper()
	b := make([]byte, tb.Size)
	if err := tb.WriteEntries(b, nil); err != nil {
		t.Fatal(err)
	}
	return b
}

// udpFrame is an Ethernet frame holding an IPv4 udp datagram.
func udpFrame() []byte {
	b := make([]byte, 14+20+8)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 28)
	ip[8], ip[9] = 64, ipt.ProtoUDP
	copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	binary.BigEndian.PutUint16(ip[20:], 1000)
	binary.BigEndian.PutUint16(ip[22:], 53)
	binary.BigEndian.PutUint16(ip[24:], 8)
	return b
}

func newEnforcer(t *testing.T, dir string, k Kmod) (*Enforcer, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	e, err := New(klog.New(&log), dir, k)
	if err != nil {
		t.Fatal(err)
	}
	return e, &log
}

func storeFiles(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

// TestInstall: a table is handed to the module, enforced, counted, and a
// replace returns the final counts of the old one.
func TestInstall(t *testing.T) {
	needBPF(t)
	k := newFake(t)
	dir := t.TempDir()
	e, _ := newEnforcer(t, dir, k)
	const ns = 1 << 40 // net_cookies are u64
	tb := dropUDP(t)
	if old, err := e.Install(ns, tb); err != nil || old != nil {
		t.Fatalf("install: %v, replaced %v", err, old)
	}
	g1 := k.gen(ns)
	if g1 == 0 {
		t.Fatal("nothing held")
	}
	if v := k.run(t, ns, udpFrame()); v != datapath.NFDrop {
		t.Fatalf("udp: verdict %d, want NF_DROP", v)
	}
	c := e.Counted(ns)
	if len(c) != tb.NumEntries() || c[tb.EntryAt(tb.HookEntry[ipt.HookLocalIn]).Index].Pcnt != 1 {
		t.Fatalf("counted %+v", c)
	}
	if got := storeFiles(t, dir); len(got) != 1 || got[0] != (&store{}).name(ns, g1) {
		t.Fatalf("store %v", got)
	}
	q := queueUDP(t)
	old, err := e.Install(ns, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(old) != tb.NumEntries() || old[tb.EntryAt(tb.HookEntry[ipt.HookLocalIn]).Index].Pcnt != 1 {
		t.Fatalf("replaced counters %+v", old)
	}
	if g2 := k.gen(ns); g2 <= g1 {
		t.Fatalf("gen %d after %d", g2, g1)
	}
	if v := k.run(t, ns, udpFrame()); v != datapath.QueueVerdict(5, true) {
		t.Fatalf("udp: verdict %#x, want NF_QUEUE 5 with bypass", v)
	}
	if got := storeFiles(t, dir); len(got) != 1 || got[0] != (&store{}).name(ns, k.gen(ns)) {
		t.Fatalf("store after replace %v", got)
	}
	e.NetnsExit(ns)
	if e.Counted(ns) != nil || len(storeFiles(t, dir)) != 0 {
		t.Fatalf("namespace not forgotten: %v", storeFiles(t, dir))
	}
}

// TestInstallFails: when the module refuses, nothing changes, and the
// errno is kept.
func TestInstallFails(t *testing.T) {
	needBPF(t)
	for _, tt := range []struct {
		name  string
		setup func(k *fakeKmod)
		errno unix.Errno
	}{
		{"namespace gone", func(k *fakeKmod) { k.gone[7] = true }, unix.ESRCH},
		{"refused", func(k *fakeKmod) { k.fail = unix.EINVAL }, unix.EINVAL},
		{"no memory", func(k *fakeKmod) { k.fail = unix.ENOMEM }, unix.ENOMEM},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := newFake(t)
			dir := t.TempDir()
			e, _ := newEnforcer(t, dir, k)
			tb := dropUDP(t)
			if _, err := e.Install(7, tb); err != nil {
				t.Fatal(err)
			}
			gen := k.gen(7)
			before := storeFiles(t, dir)
			tt.setup(k)
			_, err := e.Install(7, queueUDP(t))
			if !errors.Is(err, tt.errno) {
				t.Fatalf("got %v, want %v", err, tt.errno)
			}
			if k.gen(7) != gen || e.ns[7].gen != gen || e.ns[7].table != tb {
				t.Fatalf("state changed: held gen %d, ours %d, want %d", k.gen(7), e.ns[7].gen, gen)
			}
			if got := storeFiles(t, dir); strings.Join(got, " ") != strings.Join(before, " ") {
				t.Fatalf("store %v, was %v", got, before)
			}
		})
	}
}

// TestResume kills the umh at each point of an Install and checks that
// the restarted one restores the table whose programs the module holds,
// with its kept counters and live counts.
func TestResume(t *testing.T) {
	needBPF(t)
	for _, point := range []string{"", "before SetProgs", "after SetProgs"} {
		t.Run(point, func(t *testing.T) {
			k := newFake(t)
			dir := t.TempDir()
			e, _ := newEnforcer(t, dir, k)
			const ns = 42
			tb := dropUDP(t)
			if _, err := e.Install(ns, tb); err != nil {
				t.Fatal(err)
			}
			kept := make([]ipt.Counters, tb.NumEntries())
			kept[0] = ipt.Counters{Pcnt: 7, Bcnt: 700}
			e.Changed(ns, tb, kept)
			k.run(t, ns, udpFrame())
			want, wantKept := tb, kept
			if point != "" {
				next := queueUDP(t)
				e.crash = func(p string) {
					if p == point {
						panic(p)
					}
				}
				func() {
					defer func() { recover() }()
					e.Install(ns, next)
					t.Fatal("no crash")
				}()
				if point == "after SetProgs" {
					want, wantKept = next, make([]ipt.Counters, next.NumEntries())
				}
			}
			heldGen := k.gen(ns)
			e.Abandon()

			e2, log := newEnforcer(t, dir, k)
			var got *ipt.Table
			var gotKept []ipt.Counters
			e2.Resume(func(netns uint64, t2 *ipt.Table, k []ipt.Counters) error {
				if netns != ns {
					t.Errorf("restored netns %d", netns)
				}
				got, gotKept = t2, k
				return nil
			})
			if got == nil {
				t.Fatalf("nothing resumed; log:\n%s", log)
			}
			if !bytes.Equal(entries(t, got), entries(t, want)) {
				t.Fatalf("restored another table")
			}
			for i := range wantKept {
				if gotKept[i] != wantKept[i] {
					t.Fatalf("kept %+v, want %+v", gotKept, wantKept)
				}
			}
			if k.gen(ns) != heldGen || e2.ns[ns].gen != heldGen {
				t.Fatalf("programs not taken over (held gen %d, was %d); log:\n%s", k.gen(ns), heldGen, log)
			}
			if point != "after SetProgs" {
				// The live counts of the adopted programs: one udp packet.
				c := e2.Counted(ns)
				if c[tb.EntryAt(tb.HookEntry[ipt.HookLocalIn]).Index].Pcnt != 1 {
					t.Fatalf("live counters lost: %+v", c)
				}
			}
			if files := storeFiles(t, dir); len(files) != 1 || files[0] != (&store{}).name(ns, heldGen) {
				t.Fatalf("store after resume: %v", files)
			}
			// Gens do not repeat: the next install is above all of them.
			if _, err := e2.Install(ns, tb); err != nil {
				t.Fatal(err)
			}
			if k.gen(ns) <= heldGen+1 && point == "before SetProgs" {
				t.Fatalf("gen %d reuses the unfinished install's %d", k.gen(ns), heldGen+1)
			}
			if k.gen(ns) <= heldGen {
				t.Fatalf("gen %d not above %d", k.gen(ns), heldGen)
			}
		})
	}
}

// TestResumeMismatch: what the module holds and what the store has
// disagree.
func TestResumeMismatch(t *testing.T) {
	needBPF(t)
	k := newFake(t)
	dir := t.TempDir()
	e, _ := newEnforcer(t, dir, k)
	tb := dropUDP(t)
	for _, ns := range []uint64{1, 2, 3} {
		if _, err := e.Install(ns, tb); err != nil {
			t.Fatal(err)
		}
	}
	e.Abandon()
	// 1: held, record lost. 2: record, programs gone with the namespace.
	// 3: both, but restore refuses.
	os.Remove(filepath.Join(dir, (&store{}).name(1, k.gen(1))))
	k.SetProgs(2, 0, [kmodctl.NumHooks]*ebpf.Program{}, nil, kmodctl.Set{})
	if err := os.WriteFile(filepath.Join(dir, "9-1.netns.new"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	e2, log := newEnforcer(t, dir, k)
	var restored []uint64
	e2.Resume(func(netns uint64, _ *ipt.Table, _ []ipt.Counters) error {
		if netns == 3 {
			return errors.New("refused")
		}
		restored = append(restored, netns)
		return nil
	})
	if len(restored) != 0 {
		t.Fatalf("restored %v", restored)
	}
	if k.gen(1) != 0 || k.gen(3) != 0 {
		t.Fatalf("programs nobody can list still held: %v", k.held)
	}
	if files := storeFiles(t, dir); len(files) != 0 {
		t.Fatalf("store left: %v", files)
	}
	for _, s := range []string{"netns 1", "no record", "netns 2 went away", "netns 3", "refused"} {
		if !strings.Contains(log.String(), s) {
			t.Errorf("log lacks %q:\n%s", s, log)
		}
	}
}

// TestStoreRoundTrip: what is saved translates back to the same table; a
// damaged file is dropped, not fatal.
func TestStoreRoundTrip(t *testing.T) {
	s, err := openStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tb := dropUDP(t)
	kept := make([]ipt.Counters, tb.NumEntries())
	kept[2] = ipt.Counters{Pcnt: 1, Bcnt: 2}
	const ns = 0xFFFF_FFFF_FFFF_FFF0
	if err := s.save(ns, 77, tb, kept); err != nil {
		t.Fatal(err)
	}
	if s.save(ns, 78, tb, kept[:1]) == nil {
		t.Fatal("saved counters that do not fit")
	}
	recs, errs := s.load()
	if len(errs) != 0 || len(recs) != 1 {
		t.Fatalf("load: %v, %d records", errs, len(recs))
	}
	got, err := recs[0].table()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(entries(t, got), entries(t, tb)) || recs[0].Kept[2] != kept[2] || recs[0].Netns != ns || recs[0].Gen != 77 {
		t.Fatalf("round trip differs: %+v", recs[0])
	}
	if s.maxGen() != 77 {
		t.Fatalf("max gen %d", s.maxGen())
	}
	for name, b := range map[string][]byte{"10-1.netns": []byte("{"), "11-2.netns": nil} {
		if err := os.WriteFile(filepath.Join(s.dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A file under another record's name.
	data, _ := os.ReadFile(s.path(ns, 77))
	if err := os.WriteFile(filepath.Join(s.dir, "12-3.netns"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if recs, errs := s.load(); len(recs) != 1 || len(errs) != 3 {
		t.Fatalf("damaged files: %d records, errors %v", len(recs), errs)
	}
	if n := len(storeFilesDir(t, s.dir)); n != 1 {
		t.Fatalf("%d files left", n)
	}
}

func storeFilesDir(t *testing.T, dir string) []string { return storeFiles(t, dir) }

// TestResumeReinstalls: programs that cannot be adopted are replaced by
// the record's table compiled again (only the live counts are lost).
func TestResumeReinstalls(t *testing.T) {
	needBPF(t)
	k := newFake(t)
	dir := t.TempDir()
	e, _ := newEnforcer(t, dir, k)
	tb := dropUDP(t)
	if _, err := e.Install(5, tb); err != nil {
		t.Fatal(err)
	}
	kept := make([]ipt.Counters, tb.NumEntries())
	kept[1] = ipt.Counters{Pcnt: 3, Bcnt: 4}
	e.Changed(5, tb, kept)
	old := k.gen(5)
	e.Abandon()
	k.badIDs = true
	e2, log := newEnforcer(t, dir, k)
	var gotKept []ipt.Counters
	e2.Resume(func(_ uint64, _ *ipt.Table, k []ipt.Counters) error { gotKept = k; return nil })
	k.badIDs = false
	if gotKept == nil || gotKept[1] != kept[1] {
		t.Fatalf("not restored (%v); log:\n%s", gotKept, log)
	}
	if g := k.gen(5); g <= old || e2.ns[5] == nil || e2.ns[5].gen != g {
		t.Fatalf("not installed again: held gen %d (was %d)", g, old)
	}
	if !strings.Contains(log.String(), "installing the table again") {
		t.Fatalf("log:\n%s", log)
	}
	if v := k.run(t, 5, udpFrame()); v != datapath.NFDrop {
		t.Fatalf("verdict %d", v)
	}
	// The record is the new gen's, with the kept counters.
	recs, _ := e2.store.load()
	if len(recs) != 1 || recs[0].Gen != k.gen(5) || recs[0].Kept[1] != kept[1] {
		t.Fatalf("store: %+v", recs)
	}
}

// TestNoStore: with no state directory, a restarted umh drops what the
// module holds, since nobody can list it.
func TestNoStore(t *testing.T) {
	needBPF(t)
	k := newFake(t)
	e, _ := newEnforcer(t, "", k)
	if _, err := e.Install(3, dropUDP(t)); err != nil {
		t.Fatal(err)
	}
	e.Changed(3, dropUDP(t), make([]ipt.Counters, dropUDP(t).NumEntries()))
	e.Abandon()
	e2, _ := newEnforcer(t, "", k)
	e2.Resume(func(uint64, *ipt.Table, []ipt.Counters) error {
		t.Fatal("restored without a store")
		return nil
	})
	if k.gen(3) != 0 {
		t.Fatal("programs still held")
	}
}

// bpfFDs counts this process's open BPF program and map fds.
func bpfFDs(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, de := range des {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", de.Name()))
		if err == nil && (l == "anon_inode:bpf-prog" || l == "anon_inode:bpf-map") {
			n++
		}
	}
	return n
}

// TestNoFDsKept: after Install, Counted and a replace the umh holds no fd
// of a namespace's programs or maps, so that they go with the module's
// references (its pernet exit), whatever the umh does; what it asks of the
// namespace afterwards is answered without fuss.
func TestNoFDsKept(t *testing.T) {
	needBPF(t)
	base := bpfFDs(t)
	k := newFake(t)
	e, log := newEnforcer(t, t.TempDir(), k)
	const ns = 11
	if _, err := e.Install(ns, dropUDP(t)); err != nil {
		t.Fatal(err)
	}
	k.run(t, ns, udpFrame())
	if c := e.Counted(ns); c == nil {
		t.Fatal("nothing counted")
	}
	if old, err := e.Install(ns, queueUDP(t)); err != nil || old == nil {
		t.Fatalf("replace: %v, replaced %v", err, old)
	}
	k.run(t, ns, udpFrame())
	if c := e.Counted(ns); c == nil || c[0].Pcnt != 1 {
		t.Fatalf("counted %+v", c)
	}
	// The fake holds 3 programs and the ctx map; nothing else may be open.
	if n := bpfFDs(t); n != base+kmodctl.NumHooks+1 {
		t.Fatalf("%d bpf fds open, want %d (the module's %d)", n, base+kmodctl.NumHooks+1, kmodctl.NumHooks+1)
	}
	held, err := k.Held()
	if err != nil || len(held) != 1 {
		t.Fatalf("held %v, %v", held, err)
	}
	counters, err := findCounters(held[0], queueUDP(t).NumEntries())
	if err != nil {
		t.Fatal(err)
	}

	k.exit(ns) // the module's pernet exit; the umh is not told yet
	if n := bpfFDs(t); n != base {
		t.Fatalf("%d bpf fds open after the exit, want %d", n, base)
	}
	for _, id := range held[0].ProgID {
		if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); !errors.Is(err, os.ErrNotExist) {
			p.Close()
			t.Fatalf("program %d outlives the module's references: %v", id, err)
		}
	}
	// Maps go once their programs are freed (after an RCU grace period).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m, err := ebpf.NewMapFromID(counters)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err == nil {
			m.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters map %d outlives its programs: %v", counters, err)
		}
	}
	if c := e.Counted(ns); c != nil {
		t.Fatalf("a gone namespace counted %+v", c)
	}
	if _, err := e.Install(ns, dropUDP(t)); !errors.Is(err, unix.ESRCH) {
		t.Fatalf("install in a gone namespace: %v", err)
	}
	e.NetnsExit(ns)
	if strings.Contains(log.String(), "lost") {
		t.Fatalf("log:\n%s", log)
	}
	if n := bpfFDs(t); n != base {
		t.Fatalf("%d bpf fds open at the end, want %d", n, base)
	}
}
