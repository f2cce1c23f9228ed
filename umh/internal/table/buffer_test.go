package table

import (
	"bytes"
	"errors"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/bpfilter/bpfilter/umh/internal/wire"
)

func TestBufferBounds(t *testing.T) {
	m := NewBuffer(make([]byte, 4), 8)
	for _, tc := range []struct {
		n        int
		off      int64
		read, wr bool
	}{{4, 0, true, true}, {8, 0, false, true}, {4, 4, false, true}, {1, 8, false, false},
		{9, 0, false, false}, {1, -1, false, false}, {0, 4, true, true}} {
		_, rerr := m.ReadAt(make([]byte, tc.n), tc.off)
		_, werr := m.WriteAt(make([]byte, tc.n), tc.off)
		if (rerr == nil) != tc.read || (werr == nil) != tc.wr {
			t.Errorf("%d bytes at %d: read %v, write %v, want read %v write %v", tc.n, tc.off, rerr, werr, tc.read, tc.wr)
		}
	}
	if _, err := m.ReadAt(make([]byte, 2), 3); !errors.Is(err, ErrNotCopied) {
		t.Errorf("a read past the copied bytes: %v, want ErrNotCopied", err)
	}
}

// What goes back to the module: a get's segments only when the call wrote
// and succeeded; a replace's counters only on success.
func TestBufferAnswer(t *testing.T) {
	s := New()
	info := make([]byte, ipt.GetInfoSize)
	copy(info, "filter")
	m := NewBuffer(info, ipt.GetInfoSize)
	status, reason := s.Sockopt(testNS, ipt.SoGetInfo, false, m)
	if status != 0 {
		t.Fatalf("GET_INFO: %d %s", status, reason)
	}
	a := m.Answer(false, status)
	if len(a) != wire.SegmentSize+ipt.GetInfoSize || !bytes.Equal(a[:wire.SegmentSize], []byte{0, 0, 0, 0, byte(ipt.GetInfoSize), 0, 0, 0}) ||
		!bytes.HasPrefix(a[wire.SegmentSize:], []byte("filter")) {
		t.Fatalf("GET_INFO answered % x", a)
	}
	if a := m.Answer(false, -22); a != nil {
		t.Fatalf("a failed get answered % x", a)
	}
	if a := NewBuffer(make([]byte, 4), 4).Answer(false, 0); a != nil {
		t.Fatalf("an unwritten buffer answered % x", a)
	}
	r := NewBuffer(nil, 0)
	r.WriteCounters(0xdead, []byte{1, 2})
	if a := r.Answer(true, 0); !bytes.Equal(a, []byte{1, 2}) {
		t.Fatalf("replace answered % x", a)
	}
	if a := r.Answer(true, -11); a != nil {
		t.Fatalf("a failed replace answered % x", a)
	}
}
