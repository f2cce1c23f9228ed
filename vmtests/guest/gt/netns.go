//go:build linux

package gt

import (
	"golang.org/x/sys/unix"
)

// NetnsCookie is the net_cookie of the calling thread's network namespace
// (SO_NETNS_COOKIE): what bpfilter.ko and its umh know a namespace by. A
// cookie is never reused, unlike an inode number. Lock the OS thread
// first when it matters which namespace that is.
func NetnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, err
	}
	return c, nil
}
