package enforce

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/attach"
	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/bpfilter/bpfilter/umh/internal/klog"
)

// privateNetns is a new network namespace with a veth pair in it, held
// open by the test (as a process would hold it); its inode and a netlink
// handle in it.
func privateNetns(t *testing.T) (uint32, *netlink.Handle) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new netns (needs root): %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); ns.Close() })
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "va"}, PeerName: "vb"}); err != nil {
		t.Fatalf("veth: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino), h
}

// filtered lists the interfaces of h's namespace that have bpfilter's
// ingress filter.
func filtered(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		fs, err := h.FilterList(l, netlink.HANDLE_MIN_INGRESS)
		if err != nil {
			continue // no clsact qdisc
		}
		for _, f := range fs {
			if bf, ok := f.(*netlink.BpfFilter); ok && bf.Name == attach.FilterIngress {
				out = append(out, l.Attrs().Name)
			}
		}
	}
	return out
}

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

// isBPFFS tells whether a bpffs is mounted at dir.
func isBPFFS(t *testing.T, dir string) bool {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Type == unix.BPF_FS_MAGIC
}

// TestLifeCycle installs a table in a private namespace, takes it over in
// a second Enforcer after the first one died, and shuts down. The bpffs
// for the pins is a directory of the test, which the Enforcer mounts and
// unmounts itself.
func TestLifeCycle(t *testing.T) {
	ino, h := privateNetns(t)
	dir, bpffs := t.TempDir(), t.TempDir()
	t.Cleanup(func() { unix.Unmount(bpffs, unix.MNT_DETACH) })
	var log bytes.Buffer
	e, err := New(klog.New(&log), dir, bpffs)
	if err != nil {
		t.Fatal(err)
	}
	tb := dropUDP(t)
	if old, err := e.Install(ino, tb); err != nil || old != nil {
		t.Fatalf("install: %v, replaced %v", err, old)
	}
	if got := filtered(t, h); len(got) != 3 {
		t.Fatalf("filters on %v, want lo, va and vb", got)
	}
	if c := e.Counted(ino); len(c) != tb.NumEntries() {
		t.Fatalf("counted %d entries of %d", len(c), tb.NumEntries())
	}
	kept := make([]ipt.Counters, tb.NumEntries())
	kept[0] = ipt.Counters{Pcnt: 7, Bcnt: 700}
	e.Changed(ino, tb, kept)
	if _, err := os.Stat(filepath.Join(dir, "1"+storeSuffix)); err == nil {
		t.Fatalf("state kept under the wrong name")
	}

	// A new interface after the table: Netdev attaches to it.
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vc"}, PeerName: "vd"}); err != nil {
		t.Fatal(err)
	}
	e.Netdev(ino)
	if got := filtered(t, h); len(got) != 5 {
		t.Fatalf("after Netdev, filters on %v", got)
	}
	// A deleted interface is forgotten on the next Netdev.
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ve"}, PeerName: "vf"}); err != nil {
		t.Fatal(err)
	}
	e.Netdev(ino)
	ve, err := h.LinkByName("ve")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(ve); err != nil {
		t.Fatal(err)
	}
	e.Netdev(ino)
	if as, err := e.ns[ino].att.State(); err != nil || len(as.Links) != 5 {
		t.Fatalf("links after a deletion: %+v, %v", as.Links, err)
	}

	if !isBPFFS(t, bpffs) {
		t.Fatalf("no bpffs mounted at %s", bpffs)
	}
	if _, err := os.Stat(e.pins.path(ino)); err != nil {
		t.Fatalf("prog array not pinned: %v", err)
	}

	// The umh dies: its fds go, the kernel keeps what filters and pins
	// hold, and a new one takes over.
	e.Abandon()
	e2, err := New(klog.New(&log), dir, bpffs)
	if err != nil {
		t.Fatal(err)
	}
	var restored *ipt.Table
	var restoredKept []ipt.Counters
	e2.Resume(func(netns uint32, t2 *ipt.Table, k []ipt.Counters) error {
		if netns != ino {
			t.Errorf("restored netns %d, want %d", netns, ino)
		}
		restored, restoredKept = t2, k
		return nil
	})
	if restored == nil {
		t.Fatalf("nothing resumed; log:\n%s", log.String())
	}
	if !bytes.Equal(entries(t, restored), entries(t, tb)) || restoredKept[0] != kept[0] {
		t.Fatalf("resumed table or counters differ: %+v", restoredKept)
	}
	if st := e2.ns[ino]; st == nil || st.objs == nil || bytes.Contains(log.Bytes(), []byte("cannot take over")) {
		t.Fatalf("programs not taken over; log:\n%s", log.String())
	}
	if c := e2.Counted(ino); len(c) != tb.NumEntries() {
		t.Fatalf("counted %d entries after resume", len(c))
	}
	// The new umh replaces the table through the adopted dispatchers.
	if _, err := e2.Install(ino, tb); err != nil {
		t.Fatalf("install after resume: %v", err)
	}

	if err := e2.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if got := filtered(t, h); len(got) != 0 {
		t.Fatalf("filters left on %v", got)
	}
	for _, name := range []string{"lo", "va", "vc"} {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		qs, err := h.QdiscList(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			if q.Type() == "clsact" {
				t.Errorf("%s: clsact qdisc left", name)
			}
		}
	}
	if recs, _ := e2.store.load(); len(recs) != 0 {
		t.Fatalf("%d state files left", len(recs))
	}
	if isBPFFS(t, bpffs) {
		t.Fatalf("the bpffs the Enforcer mounted is still mounted")
	}
}

// TestStoreRoundTrip: what is saved translates back to the same table.
func TestStoreRoundTrip(t *testing.T) {
	s, err := openStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tb := dropUDP(t)
	kept := make([]ipt.Counters, tb.NumEntries())
	kept[2] = ipt.Counters{Pcnt: 1, Bcnt: 2}
	as := attach.State{Progs: 5, Links: []attach.LinkState{{Index: 1, Name: "lo", OwnQdisc: true}}}
	if err := s.save(9, tb, kept, as); err != nil {
		t.Fatal(err)
	}
	recs, errs := s.load()
	if len(errs) != 0 || len(recs) != 1 {
		t.Fatalf("load: %v, %d records", errs, len(recs))
	}
	got, err := recs[0].table()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(entries(t, got), entries(t, tb)) || recs[0].Kept[2] != kept[2] ||
		recs[0].Attach.Links[0] != as.Links[0] || recs[0].Netns != 9 {
		t.Fatalf("round trip differs: %+v", recs[0])
	}
	// A damaged file is dropped, not fatal.
	if err := os.WriteFile(s.path(10), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if recs, errs := s.load(); len(recs) != 1 || len(errs) != 1 {
		t.Fatalf("damaged file: %d records, errors %v", len(recs), errs)
	}
	if _, err := os.Stat(s.path(10)); !os.IsNotExist(err) {
		t.Fatalf("damaged file kept")
	}
}
