package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The KVM decision, with stand-ins for QEMU: shell scripts named
// qemu-system-x86_64 that count their runs, record their arguments and act
// as QEMU does on a host with working or broken KVM. No QEMU, KVM or root
// needed.

const testBound = 1500 * time.Millisecond

// standIn is a probe whose QEMU is a script running body, with an
// openable file as /dev/kvm and a kernel image in dir.
func standIn(t *testing.T, body string) (kvmProbe, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "qemu-system-x86_64")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nD=" + dir + "\necho run >>$D/runs\nprintf '%s\\n' \"$@\" >$D/args\n" + body + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"kvm", "bzImage"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("stand-in "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	machine := strings.Fields(qemuMachine)
	p := kvmProbe{
		cfg:    Config{Kernel: filepath.Join(dir, "bzImage"), Cache: filepath.Join(dir, "cache")},
		qemu:   strings.Join(append([]string{bin}, machine[1:]...), " "),
		accel:  kvmAccel,
		devKVM: filepath.Join(dir, "kvm"),
		bound:  testBound,
		host:   func() string { return "6.18.44-test\nLinux version 6.18.44-test" },
	}
	return p, dir
}

func runs(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "runs"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run\n")
}

// decide is one decision as a process makes it (cache, then probe).
func decide(t *testing.T, p kvmProbe) kvmVerdict {
	t.Helper()
	key, err := p.key()
	if err != nil {
		return kvmVerdict{Why: err.Error()}
	}
	return p.decide(key)
}

// gone waits until the process whose pid the stand-in wrote to dir/child
// has been killed (gone, or a zombie waiting for init).
func gone(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "child"))
	if err != nil {
		t.Fatalf("the stand-in's child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(2 * time.Second); ; {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if f := strings.Fields(string(st)[strings.LastIndexByte(string(st), ')')+1:]); len(f) > 0 && f[0] == "Z" {
			return
		}
		if time.Now().After(end) {
			unix.Kill(pid, unix.SIGKILL)
			t.Fatalf("QEMU's child %d outlived the probe", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kid leaves a child in QEMU's process group that holds its stdout and
// stderr, as a QEMU thread would; hang waits for it, as a QEMU spinning in
// the firmware or running its guest does.
const (
	kid  = "sleep 1000 & echo $! >$D/child\n"
	hang = "\nwait"
)

func TestKVMDecision(t *testing.T) {
	for _, c := range []struct {
		name    string
		body    string
		noKVM   string // /dev/kvm: "" an openable file, else "missing" or "dir"
		kvm     bool
		why     string // in the verdict's reason
		probes  int    // stand-in runs
		slow    bool   // takes the whole bound
		hasKid  bool   // the stand-in left a child that must be killed
		noCache bool   // the verdict is not cached (nothing was probed)
	}{
		{name: "aborts",
			body: `echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2
echo "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed." >&2
kill -ABRT $$`,
			why:    "opens but QEMU could not run a guest with it (qemu aborted: failed to set MSR 0x10a to 0x69)",
			probes: 1},
		{name: "exits with an error",
			body:   `echo "qemu-system-x86_64: failed to initialize kvm: Permission denied" >&2; exit 1`,
			why:    "(qemu exited with status 1: failed to initialize kvm: Permission denied)",
			probes: 1},
		{name: "exits silently", body: "exit 0",
			why: "(qemu exited before the kernel printed anything)", probes: 1},
		{name: "hangs silently", body: kid + hang,
			why: "(no console output within 1.5s)", probes: 1, slow: true, hasKid: true},
		{name: "hangs in the firmware after some output",
			// What QEMU 7.2 with -enable-kvm and the default CPU did here.
			body: kid + `echo "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]" >&2
printf '\033c\033[?7l\033[2J\033[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r\n'` + hang,
			why: `(no kernel console line within 1.5s; the console's last: "SeaBIOS (version 1.16.2-debian-1.16.2-1)"; ` +
				`qemu said: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0])`,
			probes: 1, slow: true, hasKid: true},
		{name: "boots and exits",
			body: `printf '[    0.000000] Linux version 6.1.192 (builder) #1\r\n'; exit 0`,
			kvm:  true, probes: 1},
		{name: "boots and keeps running",
			body: kid + "printf 'Linux version 6.1.192 (builder) #1\\r\\n[    0.000000] Command line: console=ttyS0\\r\\n'" + hang,
			kvm:  true, probes: 1, hasKid: true},
		{name: "boots, the line in pieces",
			body: kid + "printf 'early junk Linux ver'; sleep 0.3; printf 'sion 6.1.192\\r\\n'" + hang,
			kvm:  true, probes: 1, hasKid: true},
		{name: "/dev/kvm missing", body: `printf 'Linux version 6.1.192\r\n'`, noKVM: "missing",
			why: "kvm is missing", noCache: true},
		{name: "/dev/kvm cannot be opened", body: `printf 'Linux version 6.1.192\r\n'`, noKVM: "dir",
			why: " cannot be opened (is a directory)", noCache: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, dir := standIn(t, c.body)
			switch c.noKVM {
			case "missing":
				p.devKVM = filepath.Join(dir, "no-such-kvm")
			case "dir":
				p.devKVM = dir
			}
			start := time.Now()
			v := decide(t, p)
			took := time.Since(start)
			if v.KVM != c.kvm || !strings.Contains(v.Why, c.why) {
				t.Errorf("verdict KVM=%v why %q, want KVM=%v why containing %q", v.KVM, v.Why, c.kvm, c.why)
			}
			if got := runs(t, dir); got != c.probes {
				t.Errorf("the stand-in ran %d times, want %d", got, c.probes)
			}
			if c.slow && (took < p.bound || took > p.bound+time.Second) {
				t.Errorf("the decision took %s, want the bound %s (plus at most 1s)", took, p.bound)
			}
			if !c.slow && took > p.bound/2 {
				t.Errorf("the decision took %s, want it as soon as QEMU ended or printed", took)
			}
			if c.hasKid {
				gone(t, dir)
			}
			if c.probes > 0 {
				args, err := os.ReadFile(filepath.Join(dir, "args"))
				if err != nil {
					t.Fatal(err)
				}
				want := append(strings.Fields(p.qemu)[1:], strings.Fields(kvmAccel)...)
				want = append(want, probeArgs(p.cfg.Kernel)...)
				if got := strings.Split(strings.TrimSuffix(string(args), "\n"), "\n"); !reflect.DeepEqual(got, want) {
					t.Errorf("the probe ran QEMU with %q, want %q", got, want)
				}
			}
			files, _ := filepath.Glob(filepath.Join(p.cfg.Cache, "kvm", "*"))
			hidden, _ := filepath.Glob(filepath.Join(p.cfg.Cache, "kvm", ".*"))
			if len(hidden) > 0 {
				t.Errorf("temporary files left in the cache: %q", hidden)
			}
			if c.noCache {
				if len(files) > 0 {
					t.Errorf("cached %q, want no cache without a probe", files)
				}
				return
			}
			if len(files) != 1 {
				t.Fatalf("cache holds %q, want one verdict", files)
			}
			// The same decision again comes from the cache, without QEMU.
			if v2 := decide(t, p); v2.KVM != v.KVM || v2.Why != v.Why || v2.cached != files[0] {
				t.Errorf("second verdict %+v, want %+v from %s", v2, v, files[0])
			}
			if got := runs(t, dir); got != c.probes {
				t.Errorf("after a second decision the stand-in ran %d times, want %d", got, c.probes)
			}
		})
	}
}

// TestKVMCacheKey: a verdict is redone when what it depends on changes.
func TestKVMCacheKey(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(t *testing.T, p *kvmProbe, dir string)
		probes int // after the change
	}{
		{"nothing", func(*testing.T, *kvmProbe, string) {}, 1},
		{"QEMU touched", func(t *testing.T, p *kvmProbe, dir string) {
			touch(t, strings.Fields(p.qemu)[0])
		}, 2},
		{"QEMU resized, same mtime", func(t *testing.T, p *kvmProbe, dir string) {
			bin := strings.Fields(p.qemu)[0]
			st, err := os.Stat(bin)
			if err != nil {
				t.Fatal(err)
			}
			appendTo(t, bin, "\n# upgraded\n")
			if err := os.Chtimes(bin, st.ModTime(), st.ModTime()); err != nil {
				t.Fatal(err)
			}
		}, 2},
		{"host kernel", func(t *testing.T, p *kvmProbe, dir string) {
			p.host = func() string { return "6.19.0\nLinux version 6.19.0" }
		}, 2},
		{"CPU model", func(t *testing.T, p *kvmProbe, dir string) {
			p.accel = "-enable-kvm -cpu max"
		}, 2},
		{"machine options", func(t *testing.T, p *kvmProbe, dir string) {
			p.qemu += " -smp 4"
		}, 2},
		{"kernel image", func(t *testing.T, p *kvmProbe, dir string) {
			appendTo(t, p.cfg.Kernel, "rebuilt")
		}, 2},
		{"cache file damaged", func(t *testing.T, p *kvmProbe, dir string) {
			files, _ := filepath.Glob(filepath.Join(p.cfg.Cache, "kvm", "*"))
			for _, f := range files {
				os.WriteFile(f, []byte("{"), 0o644)
			}
		}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, dir := standIn(t, `echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2; kill -ABRT $$`)
			if v := decide(t, p); v.KVM {
				t.Fatalf("first verdict %+v", v)
			}
			c.change(t, &p, dir)
			v := decide(t, p)
			if v.KVM || !strings.Contains(v.Why, "qemu aborted") {
				t.Errorf("verdict after the change %+v", v)
			}
			if got := runs(t, dir); got != c.probes {
				t.Errorf("the stand-in ran %d times, want %d", got, c.probes)
			}
		})
	}
}

// TestKVMCacheKeySymlink: QEMU named by a symlink (Debian's alternatives)
// is keyed by what the link points to.
func TestKVMCacheKeySymlink(t *testing.T) {
	p, dir := standIn(t, `echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2; kill -ABRT $$`)
	bin := strings.Fields(p.qemu)[0]
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "bin", "qemu-other")
	if err := os.WriteFile(other, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(other, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link", "qemu-system-x86_64")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	p.qemu = strings.Replace(p.qemu, bin, link, 1)
	decide(t, p)
	decide(t, p)
	if got := runs(t, dir); got != 1 {
		t.Fatalf("the stand-in ran %d times, want 1", got)
	}
	// The same size and mtime, another file.
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}
	decide(t, p)
	if got := runs(t, dir); got != 2 {
		t.Errorf("after the link changed the stand-in ran %d times, want 2", got)
	}
}

func touch(t *testing.T, path string) {
	t.Helper()
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// TestKVMLine: one line per process saying why not KVM, naming the cache
// once the verdict comes from it; none when KVM works.
func TestKVMLine(t *testing.T) {
	p, dir := standIn(t, `echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2; kill -ABRT $$`)
	var lines []string
	logf := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	for i := 0; i < 3; i++ {
		if p.decideOnce(logf) {
			t.Fatal("KVM with a QEMU that aborts")
		}
	}
	want := "KVM: " + p.devKVM + " opens but QEMU could not run a guest with it " +
		"(qemu aborted: failed to set MSR 0x10a to 0x69); using TCG"
	if len(lines) != 1 || lines[0] != want {
		t.Errorf("printed %q, want once %q", lines, want)
	}
	if got := runs(t, dir); got != 1 {
		t.Errorf("the stand-in ran %d times, want 1", got)
	}

	// Another process: the verdict comes from the cache.
	key, _ := p.key()
	kvmMemo.Lock()
	delete(kvmMemo.verdicts, key)
	kvmMemo.Unlock()
	lines = nil
	p.decideOnce(logf)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], want+" (verdict of ") ||
		!strings.Contains(lines[0], "cached in "+filepath.Join(p.cfg.Cache, "kvm")) {
		t.Errorf("printed %q, want once %q with the cache named", lines, want)
	}
	if got := runs(t, dir); got != 1 {
		t.Errorf("the stand-in ran %d times, want 1", got)
	}

	missing, mdir := standIn(t, "")
	missing.devKVM = filepath.Join(mdir, "no-kvm") // a key of its own in this process
	lines = nil
	missing.decideOnce(logf)
	missing.decideOnce(logf)
	if want := "KVM: " + missing.devKVM + " is missing; using TCG"; len(lines) != 1 || lines[0] != want {
		t.Errorf("printed %q, want once %q", lines, want)
	}

	works, _ := standIn(t, `printf 'Linux version 6.1.192\r\n'`)
	lines = nil
	if !works.decideOnce(logf) || len(lines) != 0 {
		t.Errorf("a working KVM: printed %q", lines)
	}
}

// TestKVMProbeTakesTheVMLock: the probe waits for a running VM; a cached
// verdict does not.
func TestKVMProbeTakesTheVMLock(t *testing.T) {
	p, dir := standIn(t, `printf 'Linux version 6.1.192\r\n'`)
	hold := func() func() {
		unlock, err := lockVMs(p.cfg)
		if err != nil {
			t.Fatal(err)
		}
		return unlock
	}
	unlock := hold()
	done := make(chan kvmVerdict)
	go func() { done <- decide(t, p) }()
	select {
	case v := <-done:
		t.Fatalf("probed (%+v) while another process held the VM lock", v)
	case <-time.After(500 * time.Millisecond):
	}
	if got := runs(t, dir); got != 0 {
		t.Fatalf("the stand-in ran %d times under another's lock", got)
	}
	unlock()
	if v := <-done; !v.KVM {
		t.Fatalf("verdict %+v", v)
	}

	unlock = hold()
	defer unlock()
	go func() { done <- decide(t, p) }()
	select {
	case v := <-done:
		if !v.KVM || v.cached == "" {
			t.Errorf("verdict %+v, want KVM from the cache", v)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a cached verdict waited for the VM lock")
	}
}

// TestQEMUCommandOverride: VMTEST_QEMU is the command, with no probe and
// no line.
func TestQEMUCommandOverride(t *testing.T) {
	t.Setenv("VMTEST_QEMU", "/opt/qemu/bin/qemu-system-x86_64 -accel tcg")
	called := false
	got := QEMUCommand(Config{Kernel: "/nonexistent"}, func(string, ...any) { called = true })
	if got != "/opt/qemu/bin/qemu-system-x86_64 -accel tcg" || called {
		t.Errorf("QEMUCommand = %q (printed: %v), want VMTEST_QEMU and no line", got, called)
	}
}

// TestKVMProbeIsTheBoot: the probe runs what a boot under KVM runs.
func TestKVMProbeIsTheBoot(t *testing.T) {
	p := defaultProbe(Config{})
	if p.qemu+" "+p.accel != qemuMachine+" "+kvmAccel || p.devKVM != "/dev/kvm" || p.bound != probeBound {
		t.Errorf("default probe %+v", p)
	}
}
