package attach

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// TestDispatchSpec checks, without a kernel, that the dispatchers assemble
// (every jump finds its label, every map reference names a map of the
// spec) and stay small.
func TestDispatchSpec(t *testing.T) {
	spec := dispatchSpec()
	for name, p := range spec.Programs {
		var buf bytes.Buffer
		if err := p.Instructions.Marshal(&buf, binary.LittleEndian); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, ins := range p.Instructions {
			if ref := ins.Reference(); ref != "" && ins.IsLoadFromMap() {
				if _, ok := spec.Maps[ref]; !ok {
					t.Errorf("%s references missing map %q", name, ref)
				}
			}
		}
		if n := len(p.Instructions); n > 80 {
			t.Errorf("%s has %d instructions", name, n)
		}
		t.Logf("%s: %d instructions", name, len(p.Instructions))
	}
	// The prog array holds two generations of every hook slot.
	if got := spec.Maps[mapProgs].MaxEntries; got != generations*slotsPerGen {
		t.Errorf("prog array has %d slots", got)
	}
	for _, hs := range hookSlots {
		if hs.slot >= slotsPerGen {
			t.Errorf("hook %d slot %d outside a generation", hs.hook, hs.slot)
		}
	}
}
