package table

import (
	"fmt"
)

// Buffer is a caller's optval as the module copied it in: a Memory over
// bytes. Writes change the bytes, which the module copies back to the
// caller for a get; a replace's old counters are kept apart, for the
// module to copy to ipt_replace.counters.
type Buffer struct {
	b        []byte
	written  bool
	counters []byte
}

// NewBuffer returns a Buffer holding b (optlen bytes). It keeps b.
func NewBuffer(b []byte) *Buffer { return &Buffer{b: b} }

// Len is optlen.
func (m *Buffer) Len() int { return len(m.b) }

func (m *Buffer) check(n int, off int64) error {
	if off < 0 || n < 0 || off+int64(n) > int64(len(m.b)) {
		return fmt.Errorf("%d bytes at offset %d are outside optval (%d bytes)", n, off, len(m.b))
	}
	return nil
}

// ReadAt reads len(p) bytes at off: all or an error.
func (m *Buffer) ReadAt(p []byte, off int64) (int, error) {
	if err := m.check(len(p), off); err != nil {
		return 0, err
	}
	return copy(p, m.b[off:]), nil
}

// WriteAt writes p at off: all or an error.
func (m *Buffer) WriteAt(p []byte, off int64) (int, error) {
	if err := m.check(len(p), off); err != nil {
		return 0, err
	}
	m.written = true
	return copy(m.b[off:], p), nil
}

// WriteCounters keeps p, the old counters of a replace. addr is the
// caller's pointer, which the module takes from the header itself.
func (m *Buffer) WriteCounters(_ uint64, p []byte) error {
	m.counters = append([]byte(nil), p...)
	return nil
}

// Answer is the payload of the reply to a call answered with status:
// the buffer for a get that wrote it, the old counters for a replace,
// nothing otherwise (the module copies nothing back then).
func (m *Buffer) Answer(isSet bool, status int32) []byte {
	switch {
	case status != 0:
		return nil
	case isSet:
		return m.counters
	case m.written:
		return m.b
	}
	return nil
}
