package ipt

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt/kerneltest"
)

func TestRoundTripTestdata(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			blob := readHex(t, sc.name+".hex")
			r, err := Decode(blob)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got := r.Encode(); !bytes.Equal(got, blob) {
				t.Fatalf("Encode(Decode(blob)) differs:\n%s", diffHex(got, blob))
			}
		})
	}
}

func TestRoundTripCapturedReplaces(t *testing.T) {
	n := 0
	for _, rec := range readCapture(t, "sequence.capture") {
		if rec.Kind != kerneltest.Set || rec.Opt != SoSetReplace {
			continue
		}
		n++
		r, err := Decode(rec.Data)
		if err != nil {
			t.Fatalf("replace %d: %v", n, err)
		}
		if got := r.Encode(); !bytes.Equal(got, rec.Data) {
			t.Fatalf("replace %d: round trip differs:\n%s", n, diffHex(got, rec.Data))
		}
	}
	if n < 10 {
		t.Fatalf("only %d replaces in the capture", n)
	}
}

func TestDecodeModel(t *testing.T) {
	r, err := Decode(readHex(t, "user-chains.hex"))
	if err != nil {
		t.Fatal(err)
	}
	tb := r.Table
	if tb.Name != "filter" || tb.ValidHooks != FilterValidHooks || tb.NumEntries() != 15 || tb.StackSize != 3 {
		t.Fatalf("table %q hooks %#x entries %d stack %d", tb.Name, tb.ValidHooks, tb.NumEntries(), tb.StackSize)
	}
	if tb.HookEntry[HookPreRouting] != 0xFFFFFFFF || tb.Underflow[HookPostRouting] != 0xFFFFFFFF {
		t.Errorf("invalid hooks must read 0xFFFFFFFF: %x %x", tb.HookEntry, tb.Underflow)
	}
	var names []string
	for _, c := range tb.Chains {
		names = append(names, c.Name)
	}
	if got := join(names); got != "INPUT FORWARD OUTPUT allow log-drop" {
		t.Fatalf("chains %s", got)
	}
	in := tb.Chain("INPUT")
	if len(in.Rules) != 4 || in.PolicyVerdict() != VerdictDrop || !in.Builtin() || in.Hook != HookLocalIn {
		t.Fatalf("INPUT: %d rules, policy %d", len(in.Rules), in.PolicyVerdict())
	}
	if got := in.Rules[0].IP.InIfaceName(); got != "lo" {
		t.Errorf("rule 1 in-iface %q", got)
	}
	p, ok := in.Rules[1].IP.SrcPrefix()
	if !ok || p != netip.MustParsePrefix("10.0.0.0/8") {
		t.Errorf("rule 2 source %v %v", p, ok)
	}
	tcp, ok := in.Rules[1].Matches[0].Info.(*TCP)
	if !ok || tcp.DstPorts != [2]uint16{22, 22} {
		t.Errorf("rule 2 match %#v", in.Rules[1].Matches[0].Info)
	}
	allow := tb.Chain("allow")
	if j := in.Rules[1].Jump; j < 0 || tb.ChainOf(j) != allow || tb.Entries[j] != allow.Rules[0] {
		t.Errorf("rule 2 jumps to entry %d, not to allow's first rule", j)
	}
	if icmp, ok := in.Rules[2].Matches[0].Info.(*ICMP); !ok || icmp.Type != 8 {
		t.Errorf("rule 3 match %#v", in.Rules[2].Matches[0].Info)
	}
	g := in.Rules[3]
	if !g.Goto() || tb.ChainOf(g.Jump).Name != "log-drop" {
		t.Errorf("rule 4: goto %v to %d", g.Goto(), g.Jump)
	}
	ld := tb.Chain("log-drop")
	if ld.Builtin() || ld.Head == nil || ld.Policy == nil || len(ld.Rules) != 2 || ld.PolicyVerdict() != VerdictReturn {
		t.Errorf("log-drop: %+v", ld)
	}
	if ld.Rules[1].Target.Verdict != VerdictDrop || VerdictName(ld.Rules[1].Target.Verdict) != "DROP" {
		t.Errorf("log-drop rule 2 verdict %d", ld.Rules[1].Target.Verdict)
	}
	// mark_source_chains: log-drop is reached from INPUT only; FORWARD's
	// policy from FORWARD; chain heads and the final ERROR from nowhere.
	if ld.Rules[0].Hooks != 1<<HookLocalIn || tb.Chain("FORWARD").Policy.Hooks != 1<<HookForward ||
		ld.Head.Hooks != 0 || tb.Entries[tb.NumEntries()-1].Hooks != 0 {
		t.Errorf("hooks: %#x %#x %#x", ld.Rules[0].Hooks, tb.Chain("FORWARD").Policy.Hooks, ld.Head.Hooks)
	}
}

func join(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(x)
	}
	return b.String()
}

func TestDecodeMatches(t *testing.T) {
	r, err := Decode(readHex(t, "matches.hex"))
	if err != nil {
		t.Fatal(err)
	}
	in := r.Table.Chain("INPUT")
	mp := in.Rules[0].Matches[0].Info.(*Multiport)
	if mp.Count != 4 || mp.Ports[2] != 8000 || mp.PFlags[2] != 1 || mp.Flags != MultiportDestination {
		t.Errorf("multiport %+v", mp)
	}
	ir := in.Rules[1].Matches[0].Info.(*IPRange)
	if Addr4(ir.SrcMin) != netip.MustParseAddr("192.168.1.10") || ir.Flags != IPRangeSrc {
		t.Errorf("iprange %+v", ir)
	}
	if c := in.Rules[2].Matches[1].Info.(*Comment); c.Text != "not dns" {
		t.Errorf("comment %q", c.Text)
	}
	// A rule without target jumps to the next entry.
	if ft := in.Rules[3]; ft.Jump != ft.Index+1 || ft.Goto() {
		t.Errorf("fall-through rule jumps to %d", ft.Jump)
	}
	out := r.Table.Chain("OUTPUT").Rules[0]
	if out.IP.OutIfaceName() != "eth+" || out.IP.OutIfaceMask != [IfNameSize]byte{0xFF, 0xFF, 0xFF} {
		t.Errorf("out iface %q %x", out.IP.OutIfaceName(), out.IP.OutIfaceMask)
	}
}

// firstFreshEntries is the kernel's answer to the first GET_ENTRIES of the
// captured sequence: a fresh filter table.
func firstFreshEntries(t *testing.T) (in, out []byte) {
	t.Helper()
	recs := readCapture(t, "sequence.capture")
	for i, r := range recs {
		if r.Kind == kerneltest.GetIn && r.Opt == SoGetEntries {
			return r.Data, recs[i+1].Data
		}
	}
	t.Fatal("no GET_ENTRIES in the capture")
	return nil, nil
}

func TestInitialFilter(t *testing.T) {
	tb := InitialFilter()
	if tb.Size != 632 || tb.NumEntries() != 4 {
		t.Fatalf("size %d entries %d", tb.Size, tb.NumEntries())
	}
	info := tb.Info()
	want := GetInfo{
		ValidHooks: FilterValidHooks,
		HookEntry:  [NumHooks]uint32{0xFFFFFFFF, 0, 152, 304, 0xFFFFFFFF},
		Underflow:  [NumHooks]uint32{0xFFFFFFFF, 0, 152, 304, 0xFFFFFFFF},
		NumEntries: 4, Size: 632,
	}
	copy(want.Name[:], "filter")
	if info != want {
		t.Fatalf("info %+v", info)
	}
	// Byte for byte what the kernel returned for a fresh table, over the
	// buffer iptables handed in.
	in, out := firstFreshEntries(t)
	got := append([]byte(nil), in[GetEntriesSize:]...)
	if err := tb.WriteEntries(got, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, out[GetEntriesSize:]) {
		t.Fatalf("fresh table entries differ from the kernel's:\n%s", diffHex(got, out[GetEntriesSize:]))
	}
	// comefrom: INPUT, FORWARD, OUTPUT policies, then nothing for ERROR.
	for i, h := range []uint32{2, 4, 8, 0} {
		if c := binary.LittleEndian.Uint32(got[tb.Entries[i].Offset+entryComefromOff:]); c != h {
			t.Errorf("entry %d comefrom %#x, want %#x", i, c, h)
		}
	}
}

// TestWriteEntriesLeavesUntouched checks the bytes ip_tables does not
// write: name tails and bytes after a target; and those it clears:
// extension padding.
func TestWriteEntriesLeavesUntouched(t *testing.T) {
	blob := readHex(t, "udp-dport-drop.hex")
	// Padding in the udp data (after the 10-byte struct) and garbage after
	// the NUL of the match name: ip_tables zeroes the first, never copies
	// the second.
	e0 := ReplaceSize
	m := e0 + EntrySize
	blob[m+EntryMatchSize+12] = 0x55
	blob[m+extNameOff+10] = 0x66
	r, err := Decode(blob)
	if err != nil {
		t.Fatal(err)
	}
	dst := bytes.Repeat([]byte{0xAA}, int(r.Table.Size))
	if err := r.Table.WriteEntries(dst, []Counters{{Pcnt: 1, Bcnt: 2}}); err != nil {
		t.Fatal(err)
	}
	mo := EntrySize
	if dst[mo+EntryMatchSize+12] != 0 {
		t.Errorf("udp padding not cleared: %#x", dst[mo+EntryMatchSize+12])
	}
	if dst[mo+extNameOff+3] != 0 || dst[mo+extNameOff+4] != 0xAA || dst[mo+extNameOff+10] != 0xAA {
		t.Errorf("match name field: % x", dst[mo:mo+EntryMatchSize])
	}
	if c := decodeCounters(dst[entryCountersOff:]); c != (Counters{1, 2}) {
		t.Errorf("counters %+v", c)
	}
	if err := r.Table.WriteEntries(dst[1:], nil); err == nil {
		t.Error("WriteEntries accepted a short buffer")
	}
}

func TestHeaders(t *testing.T) {
	h := ReplaceHeader{ValidHooks: 0xe, NumEntries: 4, Size: 632, NumCounters: 4, Counters: 0x7ffd00001000}
	copy(h.Name[:], "filter")
	h.HookEntry[1], h.Underflow[3] = 152, 304
	got, err := ParseReplaceHeader(h.Marshal())
	if err != nil || got != h {
		t.Fatalf("replace header: %+v %v", got, err)
	}
	if _, err := ParseReplaceHeader(make([]byte, ReplaceSize-1)); ErrnoOf(err) != einval {
		t.Errorf("short header: %v", err)
	}
	g := InitialFilter().Info()
	if g2, err := ParseGetInfo(g.Marshal()); err != nil || g2 != g {
		t.Fatalf("getinfo: %+v %v", g2, err)
	}
	name, size, err := ParseGetEntries(MarshalGetEntries("filter", 632))
	if name != "filter" || size != 632 || err != nil {
		t.Fatalf("get_entries: %q %d %v", name, size, err)
	}
	c := []Counters{{1, 2}, {3, 4}}
	name, n, err := ParseCountersInfo(MarshalCountersInfo("filter", c))
	if name != "filter" || n != 2 || err != nil {
		t.Fatalf("counters_info: %q %d %v", name, n, err)
	}
	if got := DecodeCounters(EncodeCounters(c)); len(got) != 2 || got[1] != c[1] {
		t.Fatalf("counters %+v", got)
	}
	rn, rev, err := ParseGetRevision(MarshalGetRevision("multiport", 1))
	if rn != "multiport" || rev != 1 || err != nil {
		t.Fatalf("get_revision: %q %d %v", rn, rev, err)
	}
	// The kernel forces the last byte of a name to NUL.
	long := bytes.Repeat([]byte{'x'}, TableMaxNameLen)
	if got := TableName(long); len(got) != TableMaxNameLen-1 {
		t.Errorf("TableName of an unterminated field: %d bytes", len(got))
	}
}

func TestFindRevision(t *testing.T) {
	tests := []struct {
		name   string
		rev    uint8
		target bool
		best   int
		errno  error
	}{
		{"tcp", 0, false, 0, nil},
		{"tcp", 1, false, 0, eprotonosupport},
		{"multiport", 1, false, 1, nil},
		{"multiport", 0, false, 0, eprotonosupport},
		{"iprange", 1, false, 1, nil},
		{"comment", 0, false, 0, nil},
		{"quota", 0, false, 0, enoent},
		{"ERROR", 0, true, 0, nil},
		{"", 0, true, 0, nil},
		{"MARK", 2, true, 0, enoent},
		{"tcp", 0, true, 0, enoent},
	}
	for _, tt := range tests {
		best, errno := FindRevision(tt.name, tt.rev, tt.target)
		if best != tt.best || (tt.errno == nil) != (errno == 0) || tt.errno != nil && errno != tt.errno {
			t.Errorf("FindRevision(%q, %d, %v) = %d, %v; want %d, %v", tt.name, tt.rev, tt.target, best, errno, tt.best, tt.errno)
		}
	}
}
