//go:build linux

package gt

import (
	"errors"
	"io"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Kmsg reads the kernel log from a point on: only what was logged after
// NewKmsg, record by record.
type Kmsg struct {
	f     *os.File
	lines []string
}

// NewKmsg starts reading the kernel log at its current end.
func NewKmsg(t testing.TB) *Kmsg {
	t.Helper()
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/kmsg: %v", err)
	}
	if _, err := unix.Seek(fd, 0, io.SeekEnd); err != nil {
		t.Fatalf("seek /dev/kmsg: %v", err)
	}
	k := &Kmsg{f: os.NewFile(uintptr(fd), "/dev/kmsg")}
	t.Cleanup(func() { k.f.Close() })
	return k
}

// Lines returns every message logged since NewKmsg.
func (k *Kmsg) Lines() []string {
	buf := make([]byte, 8192)
	for {
		n, err := syscall.Read(int(k.f.Fd()), buf)
		if errors.Is(err, syscall.EPIPE) {
			continue // overwritten records: go on with the next
		}
		if err != nil || n <= 0 {
			break
		}
		rec := string(buf[:n])
		if i := strings.IndexByte(rec, ';'); i >= 0 {
			rec = rec[i+1:]
		}
		// Continuation lines (" KEY=value") follow the message.
		if i := strings.IndexByte(rec, '\n'); i >= 0 {
			rec = rec[:i]
		}
		k.lines = append(k.lines, rec)
	}
	return k.lines
}

// Grep returns the messages since NewKmsg that match re.
func (k *Kmsg) Grep(re *regexp.Regexp) []string {
	var out []string
	for _, l := range k.Lines() {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// Wait waits up to timeout for a message matching re, and returns its
// submatches; it fails t if none comes.
func (k *Kmsg) Wait(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	var m []string
	ok := Eventually(timeout, func() bool {
		for _, l := range k.Lines() {
			if m = re.FindStringSubmatch(l); m != nil {
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no kernel message matching %q within %v; got:\n%s", re, timeout, strings.Join(k.Lines(), "\n"))
	}
	return m
}
