// Package kerneltest lets tests use the running kernel's ip_tables as an
// oracle, without touching the network namespace the tests run in: Open
// gives a raw socket created in a fresh, private network namespace, and
// Capture runs iptables-legacy in one and records the sockopt calls it
// makes. Both skip the test when the host cannot do it (not root, no
// CLONE_NEWNET, no ip_tables, no gcc or iptables-legacy).
//
// The host kernel need not be the reference 6.1: tests that compare with
// it must only rely on behaviour that did not change.
package kerneltest

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel is a raw IPv4 socket in a private network namespace.
type Kernel struct {
	fd int
}

// netnsInode is the inode of the network namespace at path.
func netnsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Open creates the socket, or skips the test.
func Open(t testing.TB) *Kernel {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a private network namespace")
	}
	initial, err := netnsInode("/proc/self/ns/net")
	if err != nil {
		t.Skipf("no /proc/self/ns/net: %v", err)
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result)
	go func() {
		// The thread is never unlocked: it ends with this goroutine, and
		// its private namespace with it (the socket keeps its own).
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{-1, fmt.Errorf("unshare(CLONE_NEWNET): %w", err)}
			return
		}
		now, err := netnsInode("/proc/thread-self/ns/net")
		if err != nil || now == initial {
			ch <- result{-1, fmt.Errorf("network namespace did not change (%d, %v)", now, err)}
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		ch <- result{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Skipf("no private network namespace: %v", r.err)
	}
	k := &Kernel{fd: r.fd}
	// Belt and braces: the socket's own namespace must not be ours.
	nsfd, err := unix.IoctlRetInt(k.fd, unix.SIOCGSKNS)
	if err != nil {
		k.Close()
		t.Skipf("SIOCGSKNS: %v", err)
	}
	var st unix.Stat_t
	err = unix.Fstat(nsfd, &st)
	unix.Close(nsfd)
	if err != nil || st.Ino == initial {
		k.Close()
		t.Fatalf("refusing to use a socket in the test's own network namespace (%v)", err)
	}
	t.Cleanup(k.Close)
	buf := make([]byte, 84)
	copy(buf, "filter")
	if _, errno := k.Get(64, buf); errno != 0 {
		t.Skipf("the kernel's ip_tables does not answer: %v", errno)
	}
	return k
}

// Close closes the socket.
func (k *Kernel) Close() {
	if k.fd >= 0 {
		unix.Close(k.fd)
		k.fd = -1
	}
}

// Set calls setsockopt(SOL_IP, opt) with buf.
func (k *Kernel) Set(opt int, buf []byte) unix.Errno {
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(k.fd), unix.IPPROTO_IP, uintptr(opt),
		uintptr(p), uintptr(len(buf)), 0)
	runtime.KeepAlive(buf)
	return e
}

// Replace sends an IPT_SO_SET_REPLACE argument with its counters pointer
// set to a buffer of num_counters entries, which it returns: the old
// table's counters on success.
func (k *Kernel) Replace(blob []byte) (old []byte, errno unix.Errno) {
	b := append([]byte(nil), blob...)
	if len(b) < 96 {
		return nil, k.Set(64, b)
	}
	n := uint64(binary.LittleEndian.Uint32(b[84:]))
	if n > 1<<20 {
		n = 0 // the kernel refuses such a count before using the pointer
	}
	old = make([]byte, n*16+1)
	binary.LittleEndian.PutUint64(b[88:], uint64(uintptr(unsafe.Pointer(&old[0]))))
	errno = k.Set(64, b)
	runtime.KeepAlive(old)
	return old[:n*16], errno
}

// Get calls getsockopt(SOL_IP, opt) with buf and optlen len(buf); ret is
// the call's return value (GET_REVISION returns the revision).
func (k *Kernel) Get(opt int, buf []byte) (ret int, errno unix.Errno) {
	return k.GetLen(opt, buf, int32(len(buf)))
}

// GetLen is Get with an optlen that may differ from len(buf) (the buffer
// must still be large enough for what the kernel writes).
func (k *Kernel) GetLen(opt int, buf []byte, optlen int32) (ret int, errno unix.Errno) {
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	l := optlen
	r, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(k.fd), unix.IPPROTO_IP, uintptr(opt),
		uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	runtime.KeepAlive(buf)
	return int(r), e
}
