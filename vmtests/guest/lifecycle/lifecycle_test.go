//go:build vmguest

package lifecycle

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

func udpSocket() (int, error) {
	return unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
}

// load inserts the module and returns the umh's pid from the kernel log.
func load(t *testing.T, ko string) int {
	t.Helper()
	k := gt.NewKmsg(t)
	gt.Insmod(t, ko)
	m := k.Wait(t, gt.LoadedRe, 5*time.Second)
	k.Wait(t, gt.StartedRe, 5*time.Second)
	pid, _ := strconv.Atoi(m[1])
	return pid
}

func TestInsmod(t *testing.T) {
	pid := load(t, gt.GoodKO)
	p, ok := gt.ReadProc(pid)
	if !ok || p.Comm != "bpfilter_umh" || p.State == "Z" {
		t.Fatalf("pid %d is not a live bpfilter_umh: %+v (exists %v)", pid, p, ok)
	}
	if ps := gt.Procs("bpfilter_umh"); len(ps) != 1 {
		t.Fatalf("want one bpfilter_umh, have %+v", ps)
	}

	// The blob was in .init.rodata: after init, the module is small.
	fi, err := os.Stat(gt.UmhBinary)
	if err != nil {
		t.Fatal(err)
	}
	core := readInt(t, "/sys/module/bpfilter/coresize")
	t.Logf("umh blob %d bytes, module core after init %d bytes", fi.Size(), core)
	if core*20 > fi.Size() {
		t.Fatalf("module core %d bytes is not far below the blob's %d: was the blob freed?", core, fi.Size())
	}
	if init := readInt(t, "/sys/module/bpfilter/initsize"); init != 0 {
		t.Fatalf("initsize %d after init, want 0", init)
	}
}

func TestHealthCheckFailure(t *testing.T) {
	k := gt.NewKmsg(t)
	out, err := gt.Run("insmod", gt.HealthFailKO)
	if err == nil {
		gt.Unload(t)
		t.Fatalf("insmod of a module whose umh fails its health check succeeded:\n%s", out)
	}
	t.Logf("insmod failed as it should: %v: %s", err, strings.TrimSpace(out))
	k.Wait(t, regexp.MustCompile(`^bpfilter: bpfilter_umh failed its health check \(-5\), stopped it$`), 5*time.Second)
	if gt.Loaded("bpfilter") {
		t.Fatal("module is loaded after a failed health check")
	}
	gt.NoUmh(t)

	// A good module loads afterwards.
	pid := load(t, gt.GoodKO)
	if _, ok := gt.ReadProc(pid); !ok {
		t.Fatalf("umh pid %d is not running", pid)
	}
}

// sockopts are the calls the kernel hands to bpfilter.
var sockopts = []struct {
	set bool
	opt int
}{
	{false, gt.GetInfo}, {false, gt.GetEntries}, {false, gt.GetRevMatch}, {false, gt.GetRevTarget},
	{true, gt.SetReplace}, {true, gt.SetAddCounters},
}

func opName(set bool) string {
	if set {
		return "set"
	}
	return "get"
}

func TestForwarding(t *testing.T) {
	load(t, gt.GoodKO)
	// One trace line per call: these few stay under the kernel's
	// rate limit of the umh's trace file (gt.TraceBurst).
	gt.SetTrace(t, true)
	fd, err := gt.RawSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)

	// The module names the calling thread; keep this test on one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	ipTablesLoaded := gt.Loaded("ip_tables")
	for _, so := range sockopts {
		k := gt.NewKmsg(t)
		buf := make([]byte, 84)
		if so.set {
			err = gt.Setsockopt(fd, so.opt, buf)
		} else {
			_, err = gt.Getsockopt(fd, so.opt, buf)
		}
		// A zeroed buffer is not a valid call: the umh refuses it (or
		// leaves the nameless table to ip_tables, which is not loaded).
		if err == nil {
			t.Errorf("%ssockopt %d with a zeroed buffer succeeded", opName(so.set), so.opt)
		}
		want := regexp.MustCompile(`^bpfilter_umh: ` + opName(so.set) + `sockopt ` + strconv.Itoa(so.opt) +
			` len 84 pid ` + strconv.Itoa(tid) + ` netns \d+: -(\d+)( \(.+\))?$`)
		m := k.Wait(t, want, 5*time.Second)
		if errno, _ := strconv.Atoi(m[1]); !ipTablesLoaded && !errorsIs(err, unix.Errno(errno)) {
			t.Errorf("%ssockopt %d: %v, but the umh answered -%d", opName(so.set), so.opt, err, errno)
		}
	}

	// iptables-legacy works, bpfilter answering the filter table.
	out := gt.MustRun(t, "iptables-legacy", "-L", "-n")
	for _, chain := range []string{"Chain INPUT (policy ACCEPT)", "Chain FORWARD (policy ACCEPT)", "Chain OUTPUT (policy ACCEPT)"} {
		if !strings.Contains(out, chain) {
			t.Errorf("iptables-legacy -L -n lacks %q:\n%s", chain, out)
		}
	}
}

func errorsIs(err error, errno unix.Errno) bool {
	e, ok := err.(unix.Errno)
	return ok && e == errno
}

func TestUnprivilegedGetsEPERM(t *testing.T) {
	load(t, gt.GoodKO)
	// Traced, every call that reaches the umh leaves a line.
	gt.SetTrace(t, true)
	self := copySelf(t)
	for _, so := range sockopts {
		k := gt.NewKmsg(t)
		cmd := exec.Command(self)
		cmd.Env = []string{probeEnv + "=" + opName(so.set) + ":" + strconv.Itoa(so.opt)}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			var modes []string
			for _, p := range []string{"/", filepath.Dir(self), self} {
				if fi, err := os.Stat(p); err == nil {
					modes = append(modes, p+" "+fi.Mode().String())
				}
			}
			t.Fatalf("probe as nobody: %v (%v)\n%s", err, modes, out)
		}
		if got := strings.TrimSpace(string(out)); got != "errno "+strconv.Itoa(int(unix.EPERM)) {
			t.Errorf("%ssockopt %d as nobody: %q, want EPERM", opName(so.set), so.opt, got)
		}
		time.Sleep(50 * time.Millisecond)
		if seen := k.Grep(regexp.MustCompile(`^bpfilter_umh: .*sockopt`)); len(seen) > 0 {
			t.Errorf("an unprivileged request reached the umh: %q", seen)
		}
	}

	// The same probe as root does reach it, and is seen: the silence
	// above was not for want of tracing.
	k := gt.NewKmsg(t)
	cmd := exec.Command(self)
	cmd.Env = []string{probeEnv + "=get:" + strconv.Itoa(gt.GetInfo)}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("probe as root: %v\n%s", err, out)
	}
	k.Wait(t, regexp.MustCompile(`^bpfilter_umh: getsockopt `+strconv.Itoa(gt.GetInfo)+` `), 5*time.Second)
}

// copySelf copies the test binary where an unprivileged user can run it.
func copySelf(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("/", "probe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(dir, "probe")
	if err := os.WriteFile(self, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return self
}

func TestRmmod(t *testing.T) {
	for i := 0; i < 20; i++ {
		k := gt.NewKmsg(t)
		gt.MustRun(t, "insmod", gt.GoodKO)
		m := k.Wait(t, gt.LoadedRe, 5*time.Second)
		pid, _ := strconv.Atoi(m[1])
		gt.MustRun(t, "rmmod", "bpfilter")
		if gt.Loaded("bpfilter") {
			t.Fatalf("cycle %d: module still loaded after rmmod", i)
		}
		if p, ok := gt.ReadProc(pid); ok {
			t.Fatalf("cycle %d: umh pid %d still there after rmmod: %+v", i, pid, p)
		}
		k.Wait(t, regexp.MustCompile(`^bpfilter: stopped$`), 5*time.Second)
	}
	gt.NoUmh(t)
}

func TestKilledUmhRestarts(t *testing.T) {
	pid := load(t, gt.GoodKO)
	// The restarted umh's answer is checked in its trace line; the few
	// calls of one iptables command stay under the kernel's rate limit.
	gt.SetTrace(t, true)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !gt.Eventually(5*time.Second, func() bool { _, ok := gt.ReadProc(pid); return !ok }) {
		t.Fatalf("killed umh %d did not go away", pid)
	}

	k := gt.NewKmsg(t)
	out := gt.MustRun(t, "iptables-legacy", "-L", "-n")
	if !strings.Contains(out, "Chain INPUT") {
		t.Fatalf("iptables-legacy -L -n after the restart:\n%s", out)
	}
	m := k.Wait(t, gt.LoadedRe, 5*time.Second)
	npid, _ := strconv.Atoi(m[1])
	if npid == pid {
		t.Fatalf("restarted umh has the old pid %d", pid)
	}
	if p, ok := gt.ReadProc(npid); !ok || p.Comm != "bpfilter_umh" || p.State == "Z" {
		t.Fatalf("restarted umh %d is not running: %+v", npid, p)
	}
	if len(k.Grep(regexp.MustCompile(`^bpfilter_umh: getsockopt 64 .*: 0$`))) == 0 {
		t.Fatalf("the new umh did not answer iptables' GET_INFO:\n%s", strings.Join(k.Lines(), "\n"))
	}
}

func TestOnDemandLoading(t *testing.T) {
	if gt.Loaded("bpfilter") {
		t.Fatal("bpfilter loaded before the test")
	}
	rel := gt.Release(t)
	updates := filepath.Join("/lib/modules", rel, "updates")
	if err := os.MkdirAll(updates, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(gt.GoodKO)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(updates, "bpfilter.ko"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(updates)
		gt.Run("depmod", "-a", rel)
	})
	gt.MustRun(t, "depmod", "-a", rel)
	if path := strings.TrimSpace(gt.MustRun(t, "modinfo", "-n", "bpfilter")); path != filepath.Join(updates, "bpfilter.ko") {
		t.Fatalf("modprobe would load %s, not ours", path)
	}

	k := gt.NewKmsg(t)
	gt.MustRun(t, "iptables-legacy", "-L", "-n")
	if !gt.Loaded("bpfilter") {
		t.Fatalf("iptables-legacy did not load bpfilter on demand; kernel log:\n%s", strings.Join(k.Lines(), "\n"))
	}
	t.Cleanup(func() { gt.Unload(t) })
	m := k.Wait(t, gt.LoadedRe, 5*time.Second)
	k.Wait(t, gt.StartedRe, 5*time.Second)
	pid, _ := strconv.Atoi(m[1])

	gt.MustRun(t, "modprobe", "-r", "bpfilter")
	if gt.Loaded("bpfilter") {
		t.Fatal("modprobe -r bpfilter left it loaded")
	}
	if _, ok := gt.ReadProc(pid); ok {
		t.Fatalf("umh %d survived modprobe -r", pid)
	}
	gt.NoUmh(t)
}

func readInt(t *testing.T, file string) int64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return n
}
