package table

import (
	"bytes"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

func TestBufferBounds(t *testing.T) {
	m := NewBuffer(make([]byte, 8))
	for _, tc := range []struct {
		n   int
		off int64
		ok  bool
	}{{8, 0, true}, {4, 4, true}, {1, 8, false}, {9, 0, false}, {1, -1, false}, {0, 8, true}} {
		_, rerr := m.ReadAt(make([]byte, tc.n), tc.off)
		_, werr := m.WriteAt(make([]byte, tc.n), tc.off)
		if (rerr == nil) != tc.ok || (werr == nil) != tc.ok {
			t.Errorf("%d bytes at %d: read %v, write %v, want ok %v", tc.n, tc.off, rerr, werr, tc.ok)
		}
	}
}

// What goes back to the module: a get's buffer only when the call wrote
// it and succeeded; a replace's counters only on success.
func TestBufferAnswer(t *testing.T) {
	s := New()
	info := make([]byte, ipt.GetInfoSize)
	copy(info, "filter")
	m := NewBuffer(info)
	status, reason := s.Sockopt(testNS, ipt.SoGetInfo, false, m)
	if status != 0 {
		t.Fatalf("GET_INFO: %d %s", status, reason)
	}
	if a := m.Answer(false, status); len(a) != ipt.GetInfoSize || !bytes.HasPrefix(a, []byte("filter")) {
		t.Fatalf("GET_INFO answered % x", a)
	}
	if a := m.Answer(false, -22); a != nil {
		t.Fatalf("a failed get answered % x", a)
	}
	if a := NewBuffer(make([]byte, 4)).Answer(false, 0); a != nil {
		t.Fatalf("an unwritten buffer answered % x", a)
	}
	r := NewBuffer(nil)
	r.WriteCounters(0xdead, []byte{1, 2})
	if a := r.Answer(true, 0); !bytes.Equal(a, []byte{1, 2}) {
		t.Fatalf("replace answered % x", a)
	}
	if a := r.Answer(true, -11); a != nil {
		t.Fatalf("a failed replace answered % x", a)
	}
}
