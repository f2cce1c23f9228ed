package table

import (
	"encoding/binary"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// initialBlob is the fresh filter table as a replace with num_counters.
func initialBlob(numCounters uint32) []byte {
	b := ipt.InitialReplace("filter", ipt.FilterValidHooks, nil)
	binary.LittleEndian.PutUint32(b[84:], numCounters)
	return b
}

// liedBlob is blob claiming POSTROUTING too, entering at the user chain
// web's rule (an unconditional ACCEPT, so a valid underflow): it passes
// translate_table, and __do_replace refuses it ("You lied!").
func liedBlob(t testing.TB, blob []byte) []byte {
	t.Helper()
	r, err := ipt.Decode(blob)
	if err != nil {
		t.Fatal(err)
	}
	off := r.Table.Chain("web").Rules[0].Offset
	b := append([]byte(nil), blob...)
	binary.LittleEndian.PutUint32(b[32:], ipt.FilterValidHooks|1<<ipt.HookPostRouting)
	binary.LittleEndian.PutUint32(b[44+4*ipt.HookPostRouting:], off)
	binary.LittleEndian.PutUint32(b[64+4*ipt.HookPostRouting:], off)
	if _, err := ipt.Decode(b); err != nil {
		t.Fatalf("liedBlob does not pass translate_table: %v", err)
	}
	return b
}

// loopBlob: two user chains jumping to each other, reached from INPUT.
func loopBlob(t testing.TB) []byte {
	t.Helper()
	b := ipt.NewFilterBuilder()
	for _, step := range []error{
		b.NewChain("a"), b.NewChain("b"),
		b.Append("INPUT", ipt.RuleSpec{Jump: "a"}),
		b.Append("a", ipt.RuleSpec{Jump: "b"}),
		b.Append("b", ipt.RuleSpec{Jump: "a"}),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	blob, err := b.Replace(4, 0)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

// unknownMatchBlob: a rule using a match that exists nowhere.
func unknownMatchBlob(t testing.TB) []byte {
	t.Helper()
	raw := make([]byte, ipt.EntryMatchSize+8)
	binary.LittleEndian.PutUint16(raw, uint16(len(raw)))
	copy(raw[2:], "nosuchmatch")
	b := ipt.NewFilterBuilder()
	if err := b.Append("INPUT", ipt.RuleSpec{Matches: []ipt.Match{{Name: "nosuchmatch", Raw: raw}}, Jump: "DROP"}); err != nil {
		t.Fatal(err)
	}
	blob, err := b.Replace(4, 0)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}
