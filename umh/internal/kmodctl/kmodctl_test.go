package kmodctl

import (
	"path/filepath"
	"reflect"
	"testing"
	"unsafe"

	"github.com/bpfilter/bpfilter/umh/internal/cvalues"
)

// TestPinnedToC compiles kmod/msgfmt.h and compares its sockopt numbers,
// sizes and offsets with this package's.
func TestPinnedToC(t *testing.T) {
	hdr, err := filepath.Abs("../../../kmod/msgfmt.h")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		"BPFILTER_SO_BASE":                         SoBase,
		"BPFILTER_SO_SET_PROGS":                    SoSetProgs,
		"BPFILTER_SO_GET_HELD":                     SoGetHeld,
		"BPFILTER_NUM_HOOKS":                       NumHooks,
		"BPFILTER_HOOK_INPUT":                      HookInput,
		"BPFILTER_HOOK_FORWARD":                    HookForward,
		"BPFILTER_HOOK_OUTPUT":                     HookOutput,
		"sizeof(struct bpfilter_progs)":            ProgsSize,
		"sizeof(struct bpfilter_held)":             HeldSize,
		"offsetof(struct bpfilter_progs, netns)":   0,
		"offsetof(struct bpfilter_progs, gen)":     8,
		"offsetof(struct bpfilter_progs, prog_fd)": 16,
		"offsetof(struct bpfilter_progs, ctx_fd)":  28,
		"offsetof(struct bpfilter_progs, flags)":   32,
		"offsetof(struct bpfilter_progs, num_ext)": 36,
		"BPFILTER_PROGS_CONNTRACK":                 ProgsConntrack,
		"BPFILTER_PROGS_IFNAMES":                   ProgsIfNames,
		"BPFILTER_PROGS_MAX_SIZE":                  MaxProgsSize,
		"BPFILTER_EXT_TARGET":                      ExtTarget,
		"sizeof(struct bpfilter_ext)":              ExtSize,
		"sizeof(((struct bpfilter_ext *)0)->name)": ExtNameSize,
		"sizeof(struct ipt_ip)":                    ipSize,
		"XT_EXTENSION_MAXNAMELEN":                  xtExtensionMaxNameLen,
		"offsetof(struct bpfilter_ext, ext_size)":  0,
		"offsetof(struct bpfilter_ext, data_size)": 4,
		"offsetof(struct bpfilter_ext, hook_mask)": 8,
		"offsetof(struct bpfilter_ext, flags)":     12,
		"offsetof(struct bpfilter_ext, revision)":  13,
		"offsetof(struct bpfilter_ext, name)":      16,
		"offsetof(struct bpfilter_ext, ip)":        48,
		"offsetof(struct bpfilter_held, netns)":    0,
		"offsetof(struct bpfilter_held, gen)":      8,
		"offsetof(struct bpfilter_held, prog_id)":  16,
		"offsetof(struct bpfilter_held, ctx_id)":   28,
	}
	// The Go structs have the C layout too (Marshal and ParseHeld use the
	// offsets above; these keep the structs honest as documentation).
	if unsafe.Sizeof(Progs{}) != ProgsSize || unsafe.Sizeof(Held{}) != HeldSize ||
		unsafe.Offsetof(Progs{}.CtxFD) != 28 || unsafe.Offsetof(Held{}.CtxID) != 28 {
		t.Fatalf("Go structs: Progs %d, Held %d bytes", unsafe.Sizeof(Progs{}), unsafe.Sizeof(Held{}))
	}
	got := cvalues.EvalAll(t, []string{`"` + hdr + `"`}, want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("kmod/msgfmt.h and package kmodctl disagree:\nC:  %v\nGo: %v", got, want)
	}
}

func TestCodec(t *testing.T) {
	p := Progs{Netns: 0x0102030405060708, Gen: 9, ProgFD: [NumHooks]int32{3, -1, 5}, CtxFD: 6}
	b := p.Marshal()
	if len(b) != ProgsSize || b[0] != 8 || b[8] != 9 || b[16] != 3 || b[20] != 0xFF || b[24] != 5 || b[28] != 6 {
		t.Fatalf("marshal: % x", b)
	}
	raw := make([]byte, 2*HeldSize)
	raw[0], raw[8], raw[16], raw[24], raw[28] = 1, 2, 3, 4, 5
	raw[HeldSize], raw[HeldSize+8] = 7, 8
	hs, err := ParseHeld(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := []Held{{Netns: 1, Gen: 2, ProgID: [NumHooks]uint32{3, 0, 4}, CtxID: 5}, {Netns: 7, Gen: 8}}
	if !reflect.DeepEqual(hs, want) {
		t.Fatalf("parse: %+v", hs)
	}
	if _, err := ParseHeld(raw[:HeldSize+1]); err == nil {
		t.Fatal("a partial record parsed")
	}
	if hs, err := ParseHeld(nil); err != nil || len(hs) != 0 {
		t.Fatalf("empty: %v %v", hs, err)
	}
}

func TestExtMarshal(t *testing.T) {
	ip := make([]byte, ipSize)
	ip[80] = 6 // proto
	x := Ext{Name: "REJECT", Revision: 0, Target: true, HookMask: 1<<1 | 1<<3, IP: ip, Data: []byte{7, 0, 0, 0}}
	b, err := x.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != ExtSize+8 || b[0] != ExtSize+8 || b[4] != 4 || b[8] != 0x0a || b[12] != ExtTarget ||
		string(b[16:22]) != "REJECT" || b[22] != 0 || b[48+80] != 6 || b[ExtSize] != 7 {
		t.Fatalf("marshal: % x", b)
	}
	for _, bad := range []Ext{
		{Name: "", IP: ip},
		{Name: "a-name-of-twenty-nine-bytes!!", IP: ip},
		{Name: "LOG", IP: ip[:80]},
	} {
		if _, err := bad.Marshal(); err == nil {
			t.Errorf("%+v: marshalled", bad)
		}
	}
}
