//go:build vmguest

package badinput

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

var pageSize = os.Getpagesize()

// region is memory of our own, outside the Go heap, that the kernel and
// the umh may read and write as the calls direct: whatever they write
// there cannot corrupt the test.
type region struct {
	mem []byte // the whole mapping
}

// guarded maps n writable bytes that end right before an inaccessible
// page: buf is those n bytes, and any access past buf faults. The caller
// frees the region.
func guarded(n int) (buf []byte, r *region, err error) {
	rw := (n + pageSize - 1) / pageSize * pageSize
	if rw == 0 {
		rw = pageSize
	}
	mem, err := unix.Mmap(-1, 0, rw+pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %d bytes: %w", rw+pageSize, err)
	}
	if err := unix.Mprotect(mem[rw:], unix.PROT_NONE); err != nil {
		unix.Munmap(mem)
		return nil, nil, fmt.Errorf("mprotect: %w", err)
	}
	return mem[rw-n : rw], &region{mem: mem}, nil
}

// mapping maps n bytes with protection prot (PROT_NONE, PROT_READ, ...),
// not backed until touched.
func mapping(n int, prot int) (*region, error) {
	mem, err := unix.Mmap(-1, 0, n, prot, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes: %w", n, err)
	}
	return &region{mem: mem}, nil
}

func (r *region) addr() uintptr { return uintptr(unsafe.Pointer(&r.mem[0])) }

func (r *region) free() {
	if r != nil && r.mem != nil {
		unix.Munmap(r.mem)
		r.mem = nil
	}
}

func addrOf(b []byte) uintptr {
	if len(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

// setsockoptAt calls setsockopt(fd, IPPROTO_IP, opt, ptr, optlen). ptr is
// never a Go heap pointer here: it is 0, or in a region, or deliberately
// bad.
func setsockoptAt(fd, opt int, ptr uintptr, optlen int) syscall.Errno {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_IP, uintptr(opt),
		ptr, uintptr(optlen), 0)
	return e
}

// getsockoptAt calls getsockopt(fd, IPPROTO_IP, opt, ptr, lenp).
func getsockoptAt(fd, opt int, ptr, lenp uintptr) syscall.Errno {
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_IP, uintptr(opt),
		ptr, lenp, 0)
	return e
}

// errName is an errno's symbolic name ("0" for success).
func errName(e syscall.Errno) string {
	if e == 0 {
		return "0"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}
