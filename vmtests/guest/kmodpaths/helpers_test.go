//go:build vmguest

package kmodpaths

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

var (
	// What the module logs when something went wrong with the umh (the
	// pr_err lines of kmod/main.c and kmod/hooks.c).
	troubleRe = regexp.MustCompile(`^bpfilter: (read from umh failed|write to umh failed|cannot |bpfilter_umh (failed|did not answer|broke the protocol|refused))`)
	// What the umh logs when it hit a bug of its own.
	umhBugRe = regexp.MustCompile(`^bpfilter_umh: .*(BUG|panic)`)
)

// fresh unloads bpfilter and ip_tables (and iptable_filter, which an
// earlier test that failed may have left): a call that bpfilter does not
// answer then gets ENOPROTOOPT from the kernel (nf_getsockopt and
// nf_setsockopt find nobody for the optname).
func fresh(t *testing.T) {
	t.Helper()
	gt.Unload(t)
	if gt.Loaded("bpfilter") {
		t.Fatal("bpfilter is still loaded")
	}
	if gt.Loaded("iptable_filter") {
		// ip_tables pins it while it holds more than its initial
		// entries.
		if out, err := gt.Restore(gt.EmptyFilter); err != nil {
			t.Fatalf("emptying ip_tables' filter table: %v\n%s", err, out)
		}
		gt.MustRun(t, "rmmod", "iptable_filter")
	}
	if gt.Loaded("ip_tables") {
		gt.MustRun(t, "rmmod", "ip_tables")
	}
}

// noFallback fails t if a filter table call went to ip_tables: bpfilter
// did not answer it.
func noFallback(t *testing.T) {
	t.Helper()
	if gt.Loaded("iptable_filter") {
		t.Error("iptable_filter got loaded: a filter table call fell back to ip_tables")
	}
}

// load inserts ko, unloaded when t ends, and returns the umh's pid.
func load(t *testing.T, ko string) int {
	t.Helper()
	k := gt.NewKmsg(t)
	gt.Insmod(t, ko)
	m := k.Wait(t, gt.LoadedRe, 10*time.Second)
	k.Wait(t, gt.StartedRe, 10*time.Second)
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// TimeoutParam is bpfilter.ko's bound on each request to the umh, in ms:
// past it the umh is killed and the call fails with ETIMEDOUT.
const TimeoutParam = "/sys/module/bpfilter/parameters/timeout_ms"

// requestBound is the loaded module's bound on one request to the umh.
func requestBound(t testing.TB) time.Duration {
	t.Helper()
	b, err := os.ReadFile(TimeoutParam)
	if err != nil {
		t.Fatalf("the module's request bound: %v", err)
	}
	ms, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %q: %v", TimeoutParam, b, err)
	}
	return time.Duration(ms) * time.Millisecond
}

// setRequestBound sets bpfilter.timeout_ms until t ends.
func setRequestBound(t testing.TB, d time.Duration) {
	t.Helper()
	old := requestBound(t)
	if err := os.WriteFile(TimeoutParam, []byte(strconv.Itoa(int(d/time.Millisecond))+"\n"), 0); err != nil {
		t.Fatalf("bpfilter.timeout_ms=%d: %v", d/time.Millisecond, err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(TimeoutParam); err == nil {
			_ = os.WriteFile(TimeoutParam, []byte(strconv.Itoa(int(old/time.Millisecond))+"\n"), 0)
		}
	})
}

// killUmh sends the umh SIGKILL and waits until it is gone.
func killUmh(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !gt.Eventually(10*time.Second, func() bool { _, ok := gt.ReadProc(pid); return !ok }) {
		t.Fatalf("killed umh %d did not go away", pid)
	}
}

// noTrouble fails t if the kernel log since k shows the module in trouble
// with its umh, or the umh with a bug.
func noTrouble(t *testing.T, k *gt.Kmsg) {
	t.Helper()
	for _, re := range []*regexp.Regexp{troubleRe, umhBugRe} {
		if ls := k.Grep(re); len(ls) > 0 {
			t.Errorf("the kernel log shows trouble:\n%s", strings.Join(ls, "\n"))
		}
	}
}

// Syscall numbers (x86_64) as /proc/PID/syscall shows them.
const (
	sysRead       = 0
	sysSetsockopt = 54
	sysGetsockopt = 55
)

// taskSyscallArgs returns the syscall a task (its /proc/PID/task/TID/syscall
// path) is blocked in and its arguments, or -1 if it is not in one.
func taskSyscallArgs(path string) (int, []uint64) {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1, nil
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return -1, nil
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil {
		return -1, nil
	}
	var args []uint64
	for _, a := range f[1:] {
		v, _ := strconv.ParseUint(strings.TrimPrefix(a, "0x"), 16, 64)
		args = append(args, v)
	}
	return nr, args
}

// inSyscall tells whether a thread of pid is blocked in syscall nr with
// the first argument arg0: a Go child makes its calls on whichever thread
// runs the goroutine, not always its main thread.
func inSyscall(pid, nr int, arg0 uint64) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
	for _, task := range tasks {
		if n, args := taskSyscallArgs(task); n == nr && len(args) > 0 && args[0] == arg0 {
			return true
		}
	}
	return false
}

// inSockopt tells whether a thread of pid is blocked in the sockopt call
// nr (a syscall number) at IPPROTO_IP with optname opt (a Go child makes
// its call on any of its threads).
func inSockopt(pid, nr, opt int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
	for _, task := range tasks {
		n, args := taskSyscallArgs(task)
		if n == nr && len(args) >= 3 && args[1] == syscall.IPPROTO_IP && args[2] == uint64(opt) {
			return true
		}
	}
	return false
}

// stillInSockopt tells whether pid is still in the sockopt call nr, opt,
// which it was in: /proc shows a thread that is running ("running"), not
// which call it runs, so while one is, it looks again for up to a second.
// A caller copying a big request into the umh's pipe runs in the call
// whenever the umh has read some of it.
func stillInSockopt(pid, nr, opt int) bool {
	deadline := time.Now().Add(time.Second)
	for {
		if inSockopt(pid, nr, opt) {
			return true
		}
		running := false
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
		for _, task := range tasks {
			if b, err := os.ReadFile(task); err == nil && strings.HasPrefix(string(b), "running") {
				running = true
			}
		}
		if !running || time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// waitIn waits until cond holds, looking every millisecond, and fails t
// with what /proc/PID/syscall shows if it does not within timeout.
func waitIn(t *testing.T, pid int, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !cond() {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		t.Fatalf("pid %d not %s within %v (/proc/%d/syscall: %q, stat: %q)", pid, what, timeout, pid, b, st)
	}
}

// waitInSockopt waits until pid is blocked in the sockopt call nr, opt.
func waitInSockopt(t *testing.T, pid, nr, opt int, timeout time.Duration) {
	t.Helper()
	waitIn(t, pid, fmt.Sprintf("in sockopt %d/%d", nr, opt), timeout, func() bool { return inSockopt(pid, nr, opt) })
}

// Layouts of include/uapi/linux/netfilter_ipv4/ip_tables.h (x86_64).
const (
	getInfoSize      = 84 // struct ipt_getinfo
	getEntriesSize   = 40 // struct ipt_get_entries, without the entries
	countersInfoSize = 40 // struct xt_counters_info, without the counters
	counterSize      = 16 // struct xt_counters
	entryNextOff     = 90 // ipt_entry.next_offset
	entryMin         = 112
)

var le = binary.LittleEndian

// info is what GET_INFO answers about the filter table.
type info struct {
	num, size uint32
}

func named(n int) []byte {
	b := make([]byte, n)
	copy(b, "filter")
	return b
}

// getInfo is IPT_SO_GET_INFO of the filter table.
func getInfo(fd int) (info, error) {
	b := named(getInfoSize)
	n, err := gt.Getsockopt(fd, gt.GetInfo, b)
	if err != nil {
		return info{}, err
	}
	if n != getInfoSize {
		return info{}, fmt.Errorf("GET_INFO: length %d", n)
	}
	return info{num: le.Uint32(b[76:]), size: le.Uint32(b[80:])}, nil
}

// getEntries is IPT_SO_GET_ENTRIES of size bytes of entries; it returns
// the number of entries, which it walks by their next_offset.
func getEntries(fd int, size uint32) (int, error) {
	b := named(getEntriesSize + int(size))
	le.PutUint32(b[32:], size)
	if _, err := gt.Getsockopt(fd, gt.GetEntries, b); err != nil {
		return 0, err
	}
	es := b[getEntriesSize:]
	n := 0
	for off := 0; off < len(es); n++ {
		if off+entryMin > len(es) {
			return n, fmt.Errorf("GET_ENTRIES: entry %d at %d is truncated", n, off)
		}
		next := int(le.Uint16(es[off+entryNextOff:]))
		if next < entryMin || off+next > len(es) {
			return n, fmt.Errorf("GET_ENTRIES: entry %d at %d: next_offset %d", n, off, next)
		}
		off += next
	}
	return n, nil
}

// consistent checks that GET_INFO and GET_ENTRIES describe one table, and
// returns its number of entries.
func consistent(fd int) (uint32, error) {
	in, err := getInfo(fd)
	if err != nil {
		return 0, fmt.Errorf("GET_INFO: %w", err)
	}
	n, err := getEntries(fd, in.size)
	if err != nil {
		return 0, fmt.Errorf("GET_ENTRIES of %d bytes: %w", in.size, err)
	}
	if uint32(n) != in.num {
		return 0, fmt.Errorf("GET_INFO says %d entries in %d bytes, GET_ENTRIES holds %d", in.num, in.size, n)
	}
	return in.num, nil
}

// addCounters is IPT_SO_SET_ADD_COUNTERS of num zero counters to the
// filter table: it changes nothing, and bpfilter answers it in full.
func addCounters(fd int, num int) error {
	b := named(countersInfoSize + num*counterSize)
	le.PutUint32(b[32:], uint32(num))
	return gt.Setsockopt(fd, gt.SetAddCounters, b)
}

func errnoName(e int) string {
	switch e {
	case 0:
		return "0"
	case -1:
		return "not an errno"
	}
	return syscall.Errno(e).Error() + " (" + strconv.Itoa(e) + ")"
}

func isErrno(err error, e syscall.Errno) bool {
	var got syscall.Errno
	return errors.As(err, &got) && got == e
}
