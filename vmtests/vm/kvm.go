package vm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Whether KVM works is decided by running a guest under it: on some hosts
// /dev/kvm opens and KVM_CREATE_VM succeeds, yet QEMU aborts at once with
// -cpu host (failed to set MSR 0x10a) or spins in the firmware without it.
// The probe boots the test kernel itself, with the QEMU command and the
// accelerator options the real boots would use (qemuMachine, kvmAccel),
// and KVM works when the kernel's first console line ("Linux version")
// reaches the serial port within probeBound.

// probeBound bounds one probe. Under KVM the first console line comes
// well under a second after QEMU starts (firmware, decompression and
// early boot run at native speed); under TCG, which emulates every
// instruction, the test kernel's first line came 1.4 to 2.4 s after the
// start on a 2-core machine (2026-12-01). 5 s is twice that slowest path,
// a margin for a loaded host; it is what a host pays once where KVM spins
// in the firmware (an abort ends the probe at once, in about 50 ms).
const probeBound = 5 * time.Second

// probeVersion is part of the cache key: change it when the probe's logic
// or arguments change, so that old verdicts are not trusted.
const probeVersion = "1"

// probeSign is what the kernel prints first on its console.
const probeSign = "Linux version"

// probeArgs follow the QEMU command and accelerator options in a probe:
// the serial console on QEMU's stdout as in the real boots (vmtest adds
// -nographic), the kernel without an initramfs, and no reboot or waiting
// on a panic (it panics when it finds no root, if it gets that far).
func probeArgs(kernel string) []string {
	return []string{"-nographic", "-no-reboot", "-kernel", kernel,
		"-append", "console=ttyS0 loglevel=7 panic=-1"}
}

// kvmProbe is one decision's inputs; tests replace the QEMU command, the
// /dev/kvm path, the bound and the host identity.
type kvmProbe struct {
	cfg    Config // the kernel image, the cache and the VM lock
	qemu   string // QEMU binary and machine options (qemuMachine)
	accel  string // the accelerator options under test (kvmAccel)
	devKVM string
	bound  time.Duration
	host   func() string // the host kernel's identity
}

// kvmVerdict is a decision, as cached.
type kvmVerdict struct {
	Key    string    `json:"key"`
	KVM    bool      `json:"kvm"`
	Why    string    `json:"why,omitempty"` // why not, when not
	Probed time.Time `json:"probed"`
	Took   string    `json:"took"`
	cached string    // the cache file it was read from, if it was
}

func defaultProbe(cfg Config) kvmProbe {
	return kvmProbe{cfg: cfg, qemu: qemuMachine, accel: kvmAccel, devKVM: "/dev/kvm",
		bound: probeBound, host: hostKernel}
}

// hostKernel is `uname -r` and /proc/version.
func hostKernel() string {
	var u unix.Utsname
	rel := "?"
	if unix.Uname(&u) == nil {
		rel = unix.ByteSliceToString(u.Release[:])
	}
	v, _ := os.ReadFile("/proc/version")
	return rel + "\n" + strings.TrimSpace(string(v))
}

// kvmMemo holds this process's verdicts by key: a process probes and
// prints at most once per key.
var kvmMemo struct {
	sync.Mutex
	verdicts map[string]kvmVerdict
}

// KVM tells whether boots of cfg use KVM: whether a guest really runs
// under it (see kvmProbe). When not, it prints one line saying why, once
// per process, to logf (stderr if nil). The verdict is cached in
// cfg.Cache/kvm/ until QEMU, the host kernel, the options, /dev/kvm or
// the kernel image change. The probe takes the VM lock: do not call KVM
// first while holding it (Run and Interactive decide before they lock).
func KVM(cfg Config, logf func(format string, args ...any)) bool {
	return defaultProbe(cfg).decideOnce(logf)
}

func (p kvmProbe) decideOnce(logf func(format string, args ...any)) bool {
	if logf == nil {
		logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	key, err := p.key()
	if err != nil {
		// Nothing to probe with (or no /dev/kvm): cheap, so not cached.
		key = "error: " + err.Error()
	}
	kvmMemo.Lock()
	defer kvmMemo.Unlock()
	if v, ok := kvmMemo.verdicts[key]; ok {
		return v.KVM
	}
	var v kvmVerdict
	if err != nil {
		v = kvmVerdict{Why: err.Error()}
	} else {
		v = p.decide(key)
	}
	if kvmMemo.verdicts == nil {
		kvmMemo.verdicts = map[string]kvmVerdict{}
	}
	kvmMemo.verdicts[key] = v
	if !v.KVM {
		line := "KVM: " + v.Why + "; using TCG"
		if v.cached != "" {
			line += fmt.Sprintf(" (verdict of %s cached in %s)", v.Probed.Format("2006-01-02 15:04"), v.cached)
		}
		logf("%s", line)
	}
	return v.KVM
}

// errNoKVM says that /dev/kvm cannot be used at all; no probe then.
type errNoKVM struct{ why string }

func (e errNoKVM) Error() string { return e.why }

// key identifies what the verdict depends on. It fails when there is
// nothing to probe: no /dev/kvm, no QEMU, no kernel image.
func (p kvmProbe) key() (string, error) {
	f, err := os.OpenFile(p.devKVM, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", errNoKVM{p.devKVM + " is missing"}
	}
	if err != nil {
		return "", errNoKVM{fmt.Sprintf("%s cannot be opened (%v)", p.devKVM, errors.Unwrap(err))}
	}
	kst, err := f.Stat()
	f.Close()
	if err != nil {
		return "", err
	}
	rdev := uint64(0)
	if st, ok := kst.Sys().(*syscall.Stat_t); ok {
		rdev = st.Rdev
	}
	fields := strings.Fields(p.qemu)
	if len(fields) == 0 {
		return "", errors.New("no QEMU command")
	}
	bin, err := exec.LookPath(fields[0])
	if err != nil {
		return "", fmt.Errorf("cannot probe it: %w", err)
	}
	if bin, err = filepath.Abs(bin); err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		return "", fmt.Errorf("cannot probe it: %w", err)
	}
	qst, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("cannot probe it: %w", err)
	}
	if p.cfg.Kernel == "" {
		return "", errors.New("cannot probe it: no kernel image")
	}
	kernel, err := filepath.Abs(p.cfg.Kernel)
	if err != nil {
		return "", err
	}
	ist, err := os.Stat(kernel)
	if err != nil {
		return "", fmt.Errorf("cannot probe it: %w", err)
	}
	return strings.Join([]string{
		"probe " + probeVersion + " bound " + p.bound.String(),
		fmt.Sprintf("qemu %s size %d mtime %d", bin, qst.Size(), qst.ModTime().UnixNano()),
		"command " + p.qemu,
		"accel " + p.accel,
		"host " + p.host(),
		fmt.Sprintf("kvm %s present rdev %d", p.devKVM, rdev),
		fmt.Sprintf("kernel %s size %d mtime %d", kernel, ist.Size(), ist.ModTime().UnixNano()),
	}, "\n"), nil
}

func (p kvmProbe) cacheFile(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(p.cfg.Cache, "kvm", hex.EncodeToString(sum[:8]))
}

func (p kvmProbe) readCache(key string) (kvmVerdict, bool) {
	path := p.cacheFile(key)
	b, err := os.ReadFile(path)
	if err != nil {
		return kvmVerdict{}, false
	}
	var v kvmVerdict
	if json.Unmarshal(b, &v) != nil || v.Key != key {
		return kvmVerdict{}, false
	}
	v.cached = path
	return v, true
}

// writeCache replaces the verdict's file atomically (a rename).
func (p kvmProbe) writeCache(v kvmVerdict) error {
	path := p.cacheFile(v.Key)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// decide returns the cached verdict for key, or probes (under the VM
// lock, after looking at the cache again: another process may have
// probed while this one waited) and caches the result.
func (p kvmProbe) decide(key string) kvmVerdict {
	if v, ok := p.readCache(key); ok {
		return v
	}
	unlock, err := lockVMs(p.cfg)
	if err != nil {
		return kvmVerdict{Key: key, Why: fmt.Sprintf("cannot probe it: %v", err)}
	}
	defer unlock()
	if v, ok := p.readCache(key); ok {
		return v
	}
	start := time.Now()
	ok, why := p.run()
	v := kvmVerdict{Key: key, KVM: ok, Why: why, Probed: start, Took: time.Since(start).Round(time.Millisecond).String()}
	if !ok {
		v.Why = p.devKVM + " opens but QEMU could not run a guest with it (" + why + ")"
	}
	_ = p.writeCache(v) // without a cache, the next process probes again
	return v
}

// run boots the kernel under the accelerator and watches QEMU's stdout
// (the serial console) for probeSign. It kills QEMU's whole process group
// before it returns. why says what went wrong when ok is false.
func (p kvmProbe) run() (ok bool, why string) {
	args := append(strings.Fields(p.qemu), strings.Fields(p.accel)...)
	args = append(args, probeArgs(p.cfg.Kernel)...)
	r, w, err := os.Pipe()
	if err != nil {
		return false, err.Error()
	}
	defer r.Close()
	var stderr bytes.Buffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout = w
	cmd.Stderr = &limitWriter{w: &stderr, n: 8 << 10}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second // should a child escape the group with stderr
	if err := cmd.Start(); err != nil {
		w.Close()
		return false, err.Error()
	}
	w.Close()
	timer := time.NewTimer(p.bound)
	defer timer.Stop()

	var con console
	found := make(chan bool, 1) // the sign, or false at EOF
	go func() {
		var tail []byte
		buf := make([]byte, 4096)
		for {
			m, err := r.Read(buf)
			con.write(buf[:m])
			tail = append(tail, buf[:m]...)
			if bytes.Contains(tail, []byte(probeSign)) {
				found <- true
				return
			}
			if k := len(tail) - len(probeSign); k > 0 {
				tail = append(tail[:0], tail[k:]...)
			}
			if err != nil {
				found <- false
				return
			}
		}
	}()
	ok, timedOut := false, false
	select {
	case ok = <-found:
	case <-timer.C:
		timedOut = true
	}
	// The leader is not reaped yet, so its group id cannot be reused.
	_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
	werr := cmd.Wait()
	if ok {
		return true, ""
	}
	msg := firstMessage(stderr.String(), args[0])
	if timedOut {
		how := fmt.Sprintf("no console output within %s", p.bound)
		if last, n := con.last(); n > 0 {
			how = fmt.Sprintf("no kernel console line within %s; the console's last: %q", p.bound, last)
		}
		if msg != "" {
			how += "; qemu said: " + msg
		}
		return false, how
	}
	// QEMU closed its stdout: it ended before the kernel printed.
	how := "qemu exited before the kernel printed anything"
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			if st.Signal() == syscall.SIGABRT {
				how = "qemu aborted"
			} else {
				how = "qemu was killed by " + st.Signal().String()
			}
		} else {
			how = fmt.Sprintf("qemu exited with status %d", ee.ExitCode())
		}
	}
	if msg != "" {
		how += ": " + msg
	}
	return false, how
}

// firstMessage is QEMU's first line on stderr without its program name
// and "error: ", shortened to fit a line.
func firstMessage(stderr, prog string) string {
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		for _, pre := range []string{prog + ": ", filepath.Base(prog) + ": ", "error: "} {
			l = strings.TrimPrefix(l, pre)
		}
		if len(l) > 120 {
			l = l[:120] + "..."
		}
		return l
	}
	return ""
}

// limitWriter keeps the first n bytes and drops the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(b []byte) (int, error) {
	if k := min(len(b), l.n); k > 0 {
		l.w.Write(b[:k])
		l.n -= k
	}
	return len(b), nil
}

// console keeps what a probe needs to say of QEMU's serial output: how
// much came and its last line.
type console struct {
	mu   sync.Mutex
	n    int
	line []byte // the line being written
	prev string // the last complete non-empty line
}

func (c *console) write(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += len(b)
	for _, ch := range b {
		if ch == '\n' {
			if l := cleanLine(c.line); l != "" {
				c.prev = l
			}
			c.line = c.line[:0]
		} else if len(c.line) < 200 {
			c.line = append(c.line, ch)
		}
	}
}

// last is the last non-empty line and the bytes of output.
func (c *console) last() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := cleanLine(c.line); l != "" {
		return l, c.n
	}
	return c.prev, c.n
}

// terminalCodes are the escape sequences that QEMU's -nographic console
// and the firmware write (clear screen, cursor, colours).
var terminalCodes = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|.)`)

func cleanLine(b []byte) string {
	l := terminalCodes.ReplaceAllString(string(b), "")
	l = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, l)
	l = strings.TrimSpace(l)
	if len(l) > 80 {
		l = l[:80] + "..."
	}
	return l
}
