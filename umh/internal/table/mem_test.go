package table

import (
	"errors"
	"fmt"
)

// fakeMem is a caller's buffer: optlen bytes of which the first len(buf)
// are mapped (an access beyond them faults, like an unmapped page).
type fakeMem struct {
	buf       []byte
	optlen    int
	readOnly  bool
	counters  [][]byte // what WriteCounters wrote
	addrs     []uint64
	failCount bool
}

func newMem(buf []byte) *fakeMem { return &fakeMem{buf: buf, optlen: len(buf)} }

var errFault = errors.New("bad address")

func (m *fakeMem) Len() int { return m.optlen }

func (m *fakeMem) check(n int, off int64) error {
	if off < 0 || off+int64(n) > int64(uint32(m.optlen)) {
		return fmt.Errorf("[%d, %d) is outside optval: %w", off, off+int64(n), errFault)
	}
	if off+int64(n) > int64(len(m.buf)) {
		return errFault
	}
	return nil
}

func (m *fakeMem) ReadAt(p []byte, off int64) (int, error) {
	if err := m.check(len(p), off); err != nil {
		return 0, err
	}
	return copy(p, m.buf[off:]), nil
}

func (m *fakeMem) WriteAt(p []byte, off int64) (int, error) {
	if m.readOnly {
		return 0, errFault
	}
	if err := m.check(len(p), off); err != nil {
		return 0, err
	}
	return copy(m.buf[off:], p), nil
}

func (m *fakeMem) WriteCounters(addr uint64, p []byte) error {
	if m.failCount {
		return errFault
	}
	m.addrs = append(m.addrs, addr)
	m.counters = append(m.counters, append([]byte(nil), p...))
	return nil
}
