package datapath

import (
	"errors"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

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
	spec, err = Compile(tb, Options{Linear: true, Hooks: []Hook{Input()}})
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
