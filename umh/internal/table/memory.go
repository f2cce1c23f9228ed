package table

import (
	"fmt"
	"slices"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// Memory is the caller's sockopt buffer: optval, of optlen bytes. The
// umh gets it as the module copied it from the caller (Buffer); package
// table's tests also use buffers that fault part way.
//
// ReadAt and WriteAt take offsets relative to optval and must refuse any
// access outside [0, Len()); a short read or write must return an error.
// Every failure is answered with EFAULT, as ip_tables answers a failed
// copy_from_user/copy_to_user.
//
// Len is optlen as the module forwarded it (a 32-bit value). For
// getsockopt the kernel's optlen is an int: lengths of 2^31 and above are
// negative lengths there, and are treated so.
//
// WriteCounters hands over IPT_SO_SET_REPLACE's old counters: ip_tables
// copies them to ipt_replace.counters, a pointer into the caller's memory
// (addr; p holds exactly num_counters*16 bytes). The module does that copy
// itself, to the pointer in the header it copied from the caller: the umh
// only returns the bytes. A failure does not fail the replace, which has
// already happened: like ip_tables, the caller only gets a warning.
type Memory interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Len() int
	WriteCounters(addr uint64, p []byte) error
}

// readAll reads in chunks of firstChunk bytes, doubling up to maxChunk.
const (
	firstChunk = 64 << 10
	maxChunk   = 4 << 20
)

// readAll reads n bytes at off. It reads in growing chunks, so that the
// buffer grows with what the caller really has mapped, not with what it
// claims: a caller that claims a large buffer it has not mapped fails with
// EFAULT before it makes the umh allocate the claim.
func readAll(mem Memory, off int64, n uint64) ([]byte, error) {
	var buf []byte
	chunk := uint64(firstChunk)
	for uint64(len(buf)) < n {
		k := int(min(n-uint64(len(buf)), chunk))
		start := len(buf)
		buf = slices.Grow(buf, k)[:start+k]
		if err := readFull(mem, buf[start:], off+int64(start)); err != nil {
			return nil, err
		}
		chunk = min(2*chunk, maxChunk)
	}
	return buf, nil
}

// readFull reads len(p) bytes at off; a short read is an error.
func readFull(mem Memory, p []byte, off int64) error {
	n, err := mem.ReadAt(p, off)
	if err == nil && n != len(p) {
		err = fmt.Errorf("short read: %d of %d bytes", n, len(p))
	}
	if err != nil {
		return fmt.Errorf("read %d bytes at optval+%d: %w", len(p), off, err)
	}
	return nil
}

// writeFull writes p at off; a short write is an error.
func writeFull(mem Memory, p []byte, off int64) error {
	n, err := mem.WriteAt(p, off)
	if err == nil && n != len(p) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(p))
	}
	if err != nil {
		return fmt.Errorf("write %d bytes at optval+%d: %w", len(p), off, err)
	}
	return nil
}

// getLen is getsockopt's optlen as the kernel's int.
func getLen(mem Memory) int64 { return int64(int32(uint32(mem.Len()))) }

// setLen is setsockopt's optlen, an unsigned int.
func setLen(mem Memory) uint64 { return uint64(uint32(mem.Len())) }

// errnoResult turns an error into a negative errno status and its reason.
func errnoResult(err error) (int32, string) {
	return -int32(ipt.ErrnoOf(err)), err.Error()
}
