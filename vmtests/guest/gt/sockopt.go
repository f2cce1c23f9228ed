//go:build linux

package gt

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The iptables sockopts at IPPROTO_IP that the kernel hands to bpfilter.
const (
	SetReplace     = 64
	SetAddCounters = 65
	GetInfo        = 64
	GetEntries     = 65
	GetRevMatch    = 66
	GetRevTarget   = 67
)

// RawSocket opens the kind of socket iptables uses.
func RawSocket() (int, error) {
	return unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
}

// Getsockopt calls getsockopt(fd, IPPROTO_IP, opt) on buf and returns the
// length the kernel set.
func Getsockopt(fd, opt int, buf []byte) (int, error) {
	l := uint32(len(buf))
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_IP, uintptr(opt),
		uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return int(l), e
	}
	return int(l), nil
}

// Setsockopt calls setsockopt(fd, IPPROTO_IP, opt) with buf.
func Setsockopt(fd, opt int, buf []byte) error {
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_IP, uintptr(opt),
		uintptr(p), uintptr(len(buf)), 0)
	if e != 0 {
		return e
	}
	return nil
}
