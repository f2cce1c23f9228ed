//go:build linux

package gt

import (
	"errors"
	"io"
	"os"
	"regexp"
	"strconv"
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

// TraceParam is bpfilter.ko's trace switch: while it is 1, the umh logs a
// line for every forwarded call ("bpfilter_umh: getsockopt 64 len ...").
const TraceParam = "/sys/module/bpfilter/parameters/trace"

// TraceBurst is how many lines the kernel lets one open file of /dev/kmsg
// write per 5 seconds under its default printk.devkmsg=ratelimit
// (DEFAULT_RATELIMIT_BURST); it drops the rest. The umh writes its trace
// lines on a file of their own: a test that reads them must make fewer
// calls than this within 5 s.
const TraceBurst = 10

// SetTrace switches the loaded module's trace parameter; t's end switches
// it off again if the module is still there.
func SetTrace(t testing.TB, on bool) {
	t.Helper()
	v := "0"
	if on {
		v = "1"
	}
	if err := os.WriteFile(TraceParam, []byte(v+"\n"), 0); err != nil {
		t.Fatalf("bpfilter.trace=%s: %v", v, err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(TraceParam); err == nil {
			_ = os.WriteFile(TraceParam, []byte("0\n"), 0)
		}
	})
}

// suppressedRe is what the kernel logs when a rate-limited writer closes
// its file of /dev/kmsg (ratelimit_state_exit, under printk's pr_fmt).
var suppressedRe = regexp.MustCompile(`^printk: (\S+): (\d+) output lines suppressed due to ratelimiting$`)

// Suppressed returns, for each file of /dev/kmsg that a process named comm
// closed since NewKmsg after the kernel had dropped some of its lines, how
// many it dropped.
func (k *Kmsg) Suppressed(comm string) []int {
	var out []int
	for _, l := range k.Lines() {
		if m := suppressedRe.FindStringSubmatch(l); m != nil && m[1] == comm {
			n, _ := strconv.Atoi(m[2])
			out = append(out, n)
		}
	}
	return out
}

// What the module logs at insmod and rmmod (kmod/main.c).
var (
	LoadedRe  = regexp.MustCompile(`^bpfilter: Loaded bpfilter_umh pid (\d+)$`)
	StartedRe = regexp.MustCompile(`^bpfilter: started$`)
	StoppedRe = regexp.MustCompile(`^bpfilter: stopped$`)
)
