//go:build !vmguest

package datapath

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/cvalues"
)

// TestPinnedToLayout compares bpf/layout.h's #defines with the Go
// constants that stand for them (its types reach Go through bpf2go).
func TestPinnedToLayout(t *testing.T) {
	hdr, err := filepath.Abs("bpf/layout.h")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		"NONE":          none,
		"GROUP_NOPORTS": groupNoPorts,
		"NUM_HOOKS":     numHooks,
		"MAX_OPT_LEN":   maxOptLen,
		"MATCH_SIZE":    int64(len(record{}.M.Raw)),
		"MAX_GROUPS":    maxGroups,
		"MP_RANGES":     int64(len(datapathMultiportMatch{}.Ranges)),
	}
	var exprs []cvalues.Expr
	for c := range want {
		exprs = append(exprs, cvalues.Expr{Name: "v_" + c, C: c})
	}
	got := cvalues.Eval(t, []string{`"` + hdr + `"`}, exprs)
	for c, w := range want {
		if got["v_"+c] != w {
			t.Errorf("%s: C %d, Go %d", c, got["v_"+c], w)
		}
	}
}

// TestSetMatchBytes: setMatch copies a match struct's memory; that must
// be the C layout, which encoding/binary writes field by field (a struct
// with padding Go adds by itself would differ in size).
func TestSetMatchBytes(t *testing.T) {
	check := func(name string, m any, set func(*record)) {
		t.Helper()
		want, err := binary.Append(nil, binary.LittleEndian, m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var r record
		set(&r)
		if !bytes.Equal(r.M.Raw[:len(want)], want) || !bytes.Equal(r.M.Raw[len(want):], make([]byte, len(r.M.Raw)-len(want))) {
			t.Errorf("%s: setMatch wrote % x, want % x", name, r.M.Raw[:len(want)], want)
		}
	}
	ports := datapathPortsMatch{SptLo: 1, SptHi: 0xFFFF, DptLo: 80, DptHi: 80, FlgMask: 0x3f, FlgCmp: 2, Inv: 3, Tcp: 1, Option: 9}
	check("ports", ports, func(r *record) { setMatch(r, ports) })
	icmp := datapathIcmpMatch{Type: 8, CodeMin: 0, CodeMax: 255, Inv: 1}
	check("icmp", icmp, func(r *record) { setMatch(r, icmp) })
	state := datapathStateMatch{Mask: 0x1e}
	check("state", state, func(r *record) { setMatch(r, state) })
	callout := datapathCalloutMatch{Ext: 7}
	check("callout", callout, func(r *record) { setMatch(r, callout) })
	ct := datapathConntrackMatch{Addr: [4]uint32{1, 2, 3, 4}, ExpiresMin: 10, ExpiresMax: 20, L4proto: 6,
		MatchFlags: 0x3ff, StateMask: 0x1e, Revision: 3, Port: [4]uint16{1, 2, 3, 4}, PortHigh: [4]uint16{5, 6, 7, 8}}
	check("conntrack", ct, func(r *record) { setMatch(r, ct) })
	var mp datapathMultiportMatch
	mp.Inv = 1
	mp.Ranges[14] = datapathMpRange{Lo: 5, Hi: 6}
	check("multiport", mp, func(r *record) { setMatch(r, mp) })
	ipr := datapathIprangeMatch{Flags: 1, SrcMin: 0x0a000001, SrcMax: 0x0a0000ff, DstMin: 3, DstMax: 4}
	check("iprange", ipr, func(r *record) { setMatch(r, ipr) })
}
