package datapath

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

func TestPortBlocks(t *testing.T) {
	for _, c := range []struct {
		r      [2]uint16
		mask   uint32
		blocks []uint32
	}{
		{[2]uint16{80, 80}, 0xFFFF, []uint32{80}},
		{[2]uint16{0, 0}, 0xFFFF, []uint32{0}},
		{[2]uint16{65535, 65535}, 0xFFFF, []uint32{65535}},
		{[2]uint16{80, 83}, 0xFFFF, []uint32{80, 81, 82, 83}},
		{[2]uint16{65532, 65535}, 0xFFFF, []uint32{65532, 65533, 65534, 65535}},
		{[2]uint16{80, 84}, 0xFFFC, []uint32{80, 84}},
		{[2]uint16{1000, 1010}, 0xFFFC, []uint32{1000, 1004, 1008}},
		{[2]uint16{1003, 1015}, 0xFFFC, []uint32{1000, 1004, 1008, 1012}},
		{[2]uint16{1003, 1016}, 0xFFF0, []uint32{992, 1008}},
		{[2]uint16{0, 49152}, 0xC000, []uint32{0, 16384, 32768, 49152}},
		{[2]uint16{16383, 65535}, 0xC000, []uint32{0, 16384, 32768, 49152}},
		{[2]uint16{16382, 65535}, 0, nil},
		{[2]uint16{0, 65535}, 0, nil},
		{[2]uint16{9, 8}, 0, nil},
		{[2]uint16{65535, 0}, 0, nil},
	} {
		m, b := portBlocks(c.r)
		if m != c.mask || !slices.Equal(b, c.blocks) {
			t.Errorf("portBlocks(%v) = %#x %v, want %#x %v", c.r, m, b, c.mask, c.blocks)
		}
	}
	// Any range: every port has its block among the blocks, every block
	// holds a port of the range, and there are at most maxBlocks; ranges
	// of one width have one mask.
	r := rand.New(rand.NewPCG(4, 4))
	widthMask := map[uint32]uint32{}
	for n := 0; n < 20000; n++ {
		lo := uint32(r.IntN(65536))
		w := uint32(r.IntN(1 << (1 + r.IntN(16))))
		if lo+w > 0xFFFF {
			w = 0xFFFF - lo
		}
		rg := [2]uint16{uint16(lo), uint16(lo + w)}
		m, b := portBlocks(rg)
		if prev, ok := widthMask[w]; ok && prev != m {
			t.Fatalf("width %d: masks %#x and %#x", w+1, prev, m)
		}
		widthMask[w] = m
		if m == 0 {
			if w <= 3<<maxBlockBits {
				t.Fatalf("%v: no key", rg)
			}
			continue
		}
		if len(b) == 0 || len(b) > maxBlocks {
			t.Fatalf("%v: %d blocks", rg, len(b))
		}
		for _, x := range b {
			if x&m != x || x+(^m&0xFFFF) < lo || x > lo+w {
				t.Fatalf("%v: block %#x (mask %#x) outside the range", rg, x, m)
			}
		}
		for p := lo; p <= lo+w; p += 1 + uint32(r.IntN(7)) {
			if !slices.Contains(b, p&m) {
				t.Fatalf("%v: port %d has no block", rg, p)
			}
		}
	}
}

// TestEntryKeys: the keys of ranges on both ports stay within maxBlocks;
// inverted ports give no port key.
func TestEntryKeys(t *testing.T) {
	tb := buildTable(t, map[string]int32{"INPUT": drp}, chain("INPUT",
		rule().proto(ipt.ProtoTCP, false).m(tcpM([2]uint16{10, 20}, [2]uint16{1000, 1010}, 0)).j("DROP"),
		rule().proto(ipt.ProtoTCP, false).m(tcpM([2]uint16{10, 11}, [2]uint16{1000, 1001}, 0)).j("DROP"),
		rule().proto(ipt.ProtoUDP, false).m(udpM([2]uint16{10, 11}, [2]uint16{1000, 1001}, ipt.TCPInvDstPorts)).j("DROP"),
		rule().proto(ipt.ProtoUDP, false).m(udpM(anyPorts(), [2]uint16{7, 6}, 0)).j("DROP"),
	))
	in := tb.EntryAt(tb.HookEntry[ipt.HookLocalIn]).Index
	for i, want := range []struct {
		sp, dp uint32
		keys   int
	}{
		{0, 0xFFFC, 3},      // 3 blocks each: keyed by the destination only
		{0xFFFF, 0xFFFF, 4}, // 2 x 2
		{0xFFFF, 0, 2},      // dport inverted
		{0, 0, 1},           // an empty range: no port key
	} {
		s, k := entryShape(tb.Entries[in+i])
		if s.spmask != want.sp || s.dpmask != want.dp || len(k) != want.keys {
			t.Errorf("entry %d: shape %+v, %d keys; want sport %#x dport %#x, %d keys", i, s, len(k), want.sp, want.dp, want.keys)
		}
	}
}
