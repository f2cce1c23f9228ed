// Package procmem reads and writes the memory of the process that made a
// sockopt call, with process_vm_readv and process_vm_writev, strictly
// inside the buffer the call named: [addr, addr+len).
package procmem

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrOutOfRange is returned for an access outside [addr, addr+len).
var ErrOutOfRange = errors.New("access outside the caller's buffer")

// Buffer is the caller's optval: len bytes at addr in process pid.
type Buffer struct {
	pid  int
	addr uint64
	size uint32
}

// New returns the buffer of size bytes at addr in process (or thread) pid.
func New(pid int, addr uint64, size uint32) *Buffer {
	return &Buffer{pid: pid, addr: addr, size: size}
}

// Len is the buffer's size (optlen).
func (b *Buffer) Len() int { return int(b.size) }

func (b *Buffer) check(n int, off int64) error {
	if off < 0 || n < 0 || uint64(off)+uint64(n) > uint64(b.size) {
		return fmt.Errorf("%w: %d bytes at offset %d of %d", ErrOutOfRange, n, off, b.size)
	}
	if b.addr+uint64(off) < b.addr {
		return fmt.Errorf("%w: address wraps", ErrOutOfRange)
	}
	return nil
}

// ReadAt reads len(p) bytes at offset off of the buffer: all or an error.
func (b *Buffer) ReadAt(p []byte, off int64) (int, error) {
	if err := b.check(len(p), off); err != nil {
		return 0, err
	}
	return transfer(b.pid, p, b.addr+uint64(off), false)
}

// WriteAt writes p at offset off of the buffer: all or an error.
func (b *Buffer) WriteAt(p []byte, off int64) (int, error) {
	if err := b.check(len(p), off); err != nil {
		return 0, err
	}
	return transfer(b.pid, p, b.addr+uint64(off), true)
}

// WriteCounters writes p at an address the caller named inside its request
// (the counters pointer of IPT_SO_SET_REPLACE), as copy_to_user would.
func (b *Buffer) WriteCounters(addr uint64, p []byte) error {
	if addr+uint64(len(p)) < addr {
		return fmt.Errorf("%w: address wraps", ErrOutOfRange)
	}
	_, err := transfer(b.pid, p, addr, true)
	return err
}

// transfer moves p to or from addr in pid, looping over partial
// transfers; a transfer that makes no progress is EFAULT, as the kernel's
// copy_{to,from}_user would answer.
func transfer(pid int, p []byte, addr uint64, write bool) (int, error) {
	done := 0
	for done < len(p) {
		local := []unix.Iovec{{Base: &p[done]}}
		local[0].SetLen(len(p) - done)
		remote := []unix.RemoteIovec{{Base: uintptr(addr) + uintptr(done), Len: len(p) - done}}
		var n int
		var err error
		if write {
			n, err = unix.ProcessVMWritev(pid, local, remote, 0)
		} else {
			n, err = unix.ProcessVMReadv(pid, local, remote, 0)
		}
		if err != nil {
			return done, fmt.Errorf("process_vm_%s of pid %d at %#x: %w", op(write), pid, addr, err)
		}
		if n == 0 {
			return done, fmt.Errorf("process_vm_%s of pid %d at %#x: %w", op(write), pid, addr, unix.EFAULT)
		}
		done += n
	}
	return done, nil
}

func op(write bool) string {
	if write {
		return "writev"
	}
	return "readv"
}
