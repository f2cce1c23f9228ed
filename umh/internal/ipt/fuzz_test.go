package ipt

import (
	"bytes"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt/kerneltest"
)

// seeds are valid blobs: the testdata, the captured replaces and a few of
// the errno cases; the fuzzer mutates them.
func seeds(f *testing.F) [][]byte {
	var out [][]byte
	for _, sc := range scenarios {
		out = append(out, readHex(f, sc.name+".hex"))
	}
	for _, r := range readCapture(f, "sequence.capture") {
		if r.Kind == kerneltest.Set && r.Opt == SoSetReplace {
			out = append(out, r.Data)
		}
	}
	for i, c := range errnoCases {
		if i%4 == 0 {
			out = append(out, c.blob(f))
		}
	}
	return out
}

// FuzzDecode: Decode never panics; what it accepts encodes back to the
// same bytes, and lays out for GET_ENTRIES without panicking.
func FuzzDecode(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		r, err := Decode(blob)
		if err != nil {
			if ErrnoOf(err) == 0 {
				t.Fatalf("error without errno: %v", err)
			}
			return
		}
		want := blob[:ReplaceSize+int(r.Header.Size)]
		if got := r.Encode(); !bytes.Equal(got, want) {
			t.Fatalf("round trip differs:\n%s", diffHex(got, want))
		}
		img := bytes.Repeat([]byte{0xAA}, int(r.Table.Size))
		if err := r.Table.WriteEntries(img, make([]Counters, r.Table.NumEntries())); err != nil {
			t.Fatal(err)
		}
		_ = r.Table.Info()
	})
}

// FuzzTranslate fuzzes the entries under a header that is consistent with
// them as far as sizes go, so that mutations reach the deeper checks.
func FuzzTranslate(f *testing.F) {
	for _, s := range seeds(f) {
		if len(s) >= ReplaceSize {
			h, _ := ParseReplaceHeader(s)
			f.Add(s[ReplaceSize:], h.NumEntries, h.HookEntry[1], h.HookEntry[2], h.HookEntry[3], h.Underflow[1], h.Underflow[2], h.Underflow[3])
		}
	}
	f.Fuzz(func(t *testing.T, entries []byte, num, e1, e2, e3, u1, u2, u3 uint32) {
		h := ReplaceHeader{
			ValidHooks: FilterValidHooks, NumEntries: num, Size: uint32(len(entries)), NumCounters: 1,
			HookEntry: [NumHooks]uint32{0, e1, e2, e3, 0},
			Underflow: [NumHooks]uint32{0, u1, u2, u3, 0},
		}
		tb, err := Translate(&h, entries)
		if err != nil {
			return
		}
		if got := tb.Encode(); !bytes.Equal(got, entries) {
			t.Fatalf("round trip differs:\n%s", diffHex(got, entries))
		}
		_ = tb.KernelEntries(nil)
		for _, e := range tb.Entries {
			if e.Jump >= len(tb.Entries) {
				t.Fatalf("jump out of range")
			}
		}
	})
}
