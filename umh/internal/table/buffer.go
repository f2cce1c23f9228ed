package table

import (
	"errors"
	"fmt"

	"github.com/bpfilter/bpfilter/umh/internal/wire"
)

// ErrNotCopied is the error of a read of optval beyond what the module
// copied: it copies what ip_tables would read for the call (kmod/main.c,
// call_len), so such a read only comes for a call that ip_tables refuses,
// or with sizes no table has.
var ErrNotCopied = errors.New("beyond what the module copied")

// Buffer is a caller's optval as the module copied it in: a Memory over
// the first bytes of optval (those the call reads), of optlen bytes in
// all. Writes are kept as segments, which the module writes into the
// caller's optval for a get; a replace's old counters are kept apart, for
// the module to copy to ipt_replace.counters.
type Buffer struct {
	b        []byte
	optlen   int
	segs     []wire.Segment
	counters []byte
}

// NewBuffer returns a Buffer of optlen bytes whose first len(b) are b. It
// keeps b.
func NewBuffer(b []byte, optlen uint32) *Buffer {
	return &Buffer{b: b, optlen: int(optlen)}
}

// Len is optlen.
func (m *Buffer) Len() int { return m.optlen }

func (m *Buffer) check(n int, off int64) error {
	if off < 0 || n < 0 || off+int64(n) > int64(uint32(m.optlen)) {
		return fmt.Errorf("%d bytes at offset %d are outside optval (%d bytes)", n, off, uint32(m.optlen))
	}
	return nil
}

// ReadAt reads len(p) bytes at off: all or an error (ErrNotCopied beyond
// what the module copied).
func (m *Buffer) ReadAt(p []byte, off int64) (int, error) {
	if err := m.check(len(p), off); err != nil {
		return 0, err
	}
	if off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("%d bytes at offset %d: %w (%d bytes)", len(p), off, ErrNotCopied, len(m.b))
	}
	return copy(p, m.b[off:]), nil
}

// WriteAt keeps p for offset off: all or an error.
func (m *Buffer) WriteAt(p []byte, off int64) (int, error) {
	if err := m.check(len(p), off); err != nil {
		return 0, err
	}
	m.segs = append(m.segs, wire.Segment{Off: uint32(off), Data: append([]byte(nil), p...)})
	return len(p), nil
}

// WriteCounters keeps p, the old counters of a replace. addr is the
// caller's pointer, which the module takes from the header itself.
func (m *Buffer) WriteCounters(_ uint64, p []byte) error {
	m.counters = append([]byte(nil), p...)
	return nil
}

// Answer is the payload of the reply to a call answered with status:
// the segments written for a get, the old counters for a replace,
// nothing otherwise (the module copies nothing back then).
func (m *Buffer) Answer(isSet bool, status int32) []byte {
	switch {
	case status != 0:
		return nil
	case isSet:
		return m.counters
	case len(m.segs) > 0:
		return wire.EncodeSegments(m.segs)
	}
	return nil
}
