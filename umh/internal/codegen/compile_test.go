package codegen

import (
	"errors"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

func TestRangeMask(t *testing.T) {
	for _, c := range []struct {
		r    [2]uint16
		want uint32
	}{
		{[2]uint16{80, 80}, 0xFFFF},
		{[2]uint16{1024, 1039}, 0xFFF0},
		{[2]uint16{1020, 1030}, 0xF800},
		{[2]uint16{0, 4095}, 0xF000},
		{[2]uint16{0, 4096}, 0},
		{[2]uint16{0, 65535}, 0},
		{[2]uint16{9, 8}, 0},
	} {
		if got := rangeMask(c.r); got != c.want {
			t.Errorf("rangeMask(%v) = %#x, want %#x", c.r, got, c.want)
		}
		if m := rangeMask(c.r); m != 0 {
			for p := uint32(c.r[0]); p <= uint32(c.r[1]); p++ {
				if p&m != uint32(c.r[0])&m {
					t.Fatalf("%v: port %d outside the block", c.r, p)
				}
			}
		}
	}
}

// TestCompileShapes: classification facts, without loading.
func TestCompileShapes(t *testing.T) {
	tb := matchLast(t, 1000, 1)
	spec, err := Compile(tb, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s := spec.Stats; s.Groups != 1 || s.MaxBucket != 1 || s.Buckets != 1000 || len(spec.Collection.Programs) != 3 {
		t.Errorf("stats %+v, %d programs", s, len(spec.Collection.Programs))
	}
	spec, err = Compile(tb, Options{Linear: true, Hooks: []Hook{InputTC()}})
	if err != nil {
		t.Fatal(err)
	}
	if s := spec.Stats; s.Groups != 0 || s.Linear != s.Entries || len(spec.Collection.Programs) != 1 {
		t.Errorf("linear: stats %+v, %d programs", s, len(spec.Collection.Programs))
	}
	if _, err := Compile(tb, Options{Hooks: []Hook{{Hook: ipt.HookPreRouting}}}); err == nil {
		t.Errorf("a hook the table does not have compiled")
	}
	// A target no validated table holds.
	bad := matchLast(t, 1, 1)
	bad.Entries[0].Target.Kind = ipt.TargetOther
	if _, err := Compile(bad, Options{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("other target: %v", err)
	}
}
