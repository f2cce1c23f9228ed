package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hugelgupf/vmtest/qemu/qevent"
)

// GuestTests is a group of Go tests that run inside one VM boot: the
// package pkg, built with -tags vmguest, run by vmtest's gouinit.
type GuestTests struct {
	Pkg     string        // import path of the guest test package
	Timeout time.Duration // for the whole VM run
	// KmodTests, if set, is a -test.run pattern of the guest tests that
	// reach kmod's paths: with Config.KmodOnly (make vmtest-debug), only
	// they run, since the rest (umh and scale tests) are many times slower
	// on the debug kernel and test nothing of the kernel's that the plain
	// run does not.
	KmodTests string
	// Only, if set, is a -test.run pattern: only the guest tests and
	// benchmarks that it matches run (make bench RUN=...).
	Only string
}

// runnerError is what gouinit reports about a test binary.
type runnerError struct {
	Binary string
	Error  string
}

// testEvent is what cmd/test2json writes.
type testEvent struct {
	Action string
	Test   string
	Output string
}

// Run boots one VM for the group and reports each guest test as a subtest
// of t. A guest test or subtest that skipped fails here: in the VM there
// is nothing to skip for. So does every error of the guest's test runner
// (a test binary that did not start or exited non-zero), and kernel
// oopses, BUGs and warnings.
func (g GuestTests) Run(t *testing.T) {
	t.Helper()
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	initramfs, err := Initramfs(cfg, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	name := path.Base(g.Pkg)
	shared := t.TempDir()
	if err := Populate(cfg, shared); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(shared, "tests", name, name+".test")
	build := exec.Command("go", "test", "-c", "-tags", "vmguest", "-trimpath", "-o", bin, g.Pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build guest tests %s: %v\n%s", g.Pkg, err, out)
	}
	timeout := g.Timeout * time.Duration(cfg.Slowdown)
	script := GuestSetup + fmt.Sprintf("gouinit -test_timeout=%s\n", timeout) + kmemleakScan +
		fmt.Sprintf("dmesg > %s/dmesg.txt\n", SharedMount)
	if err := os.WriteFile(filepath.Join(shared, Script), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg.KmodOnly && g.KmodTests != "" {
		t.Logf("only the guest tests that reach kmod's paths: %s", g.KmodTests)
		if err := os.WriteFile(filepath.Join(shared, "run"), []byte(g.KmodTests+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	} else if g.Only != "" {
		t.Logf("only the guest tests and benchmarks matching %s", g.Only)
		if err := os.WriteFile(filepath.Join(shared, "run"), []byte(g.Only+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	serial := filepath.Join(cfg.Build, "vmtest-"+name+".log")
	dmesgCopy := filepath.Join(cfg.Build, "vmtest-"+name+".dmesg")
	_ = os.Remove(dmesgCopy) // a run that dies leaves none: never show an old one
	start := time.Now()
	runErr := Run(context.Background(), cfg, initramfs, Boot{
		Shared:    shared,
		SerialLog: serial,
		Timeout:   timeout + time.Minute,
	})
	t.Logf("VM %s ran %v; serial console: %s", name, time.Since(start).Round(100*time.Millisecond), serial)
	if runErr != nil {
		t.Errorf("VM run failed (serial console in %s): %v", serial, runErr)
	}

	results, err := qevent.ReadFile[testEvent](filepath.Join(shared, "results.json"))
	if err != nil {
		t.Fatalf("no guest test results (serial console in %s): %v", serial, err)
	}
	runnerErrs, err := qevent.ReadFile[runnerError](filepath.Join(shared, "errors.json"))
	for _, p := range runnerProblems(runnerErrs, err) {
		t.Error(p)
	}
	reportEvents(t, results, serial)
	if cfg.KmodOnly && g.KmodTests != "" {
		ran := map[string]bool{}
		for _, e := range results {
			ran[e.Test] = true
		}
		for _, name := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(g.KmodTests, "^("), ")$"), "|") {
			if !ran[name] {
				t.Errorf("%s did not run in the guest (KmodTests %s names it)", name, g.KmodTests)
			}
		}
	}

	for _, log := range []string{serial, filepath.Join(shared, "dmesg.txt")} {
		bad, err := KernelProblems(log)
		if err != nil {
			t.Errorf("kernel log %s: %v", log, err)
			continue
		}
		if len(bad) > 0 {
			t.Errorf("the kernel reported problems (%s):\n%s", log, strings.Join(bad, "\n"))
		}
	}
	if dm, err := os.ReadFile(filepath.Join(shared, "dmesg.txt")); err == nil {
		_ = os.WriteFile(dmesgCopy, dm, 0o644)
	}
}

// kmemleakScan asks a debug kernel (kconfig/debug.config) for a kmemleak
// scan after the tests, so that leaks show in the kernel log that
// KernelProblems reads (GuestSetup mounted debugfs). kmemleak reports only
// objects older than 5 s: the second scan sees what the tests left last.
// Its report (each leaked object with the stack that allocated it) goes to
// the serial console. Kernels without kmemleak skip it.
const kmemleakScan = `if [ -d /sys/kernel/debug ]; then
	if [ -e /sys/kernel/debug/kmemleak ]; then
		echo scan > /sys/kernel/debug/kmemleak
		sleep 6
		echo scan > /sys/kernel/debug/kmemleak
		cat /sys/kernel/debug/kmemleak
	fi
fi
`

// Populate puts the modules of cfg.Build into shared/modules.
func Populate(cfg Config, shared string) error {
	dir := filepath.Join(shared, "modules")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rel, err := cfg.Release()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "release"), []byte(rel+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "slowdown"), []byte(strconv.Itoa(max(cfg.Slowdown, 1))+"\n"), 0o644); err != nil {
		return err
	}
	for _, m := range Modules {
		b, err := os.ReadFile(filepath.Join(cfg.Build, m))
		if err != nil {
			return fmt.Errorf("%w (run `make` first)", err)
		}
		if err := os.WriteFile(filepath.Join(dir, m), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// benchLines are the benchmark results on the guest's console (test2json
// may cut a result line into several events; the console has it whole).
func benchLines(serial string) []string {
	b, err := os.ReadFile(serial)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "Benchmark") && strings.Contains(l, "/op") {
			out = append(out, l)
		}
	}
	return out
}

// guestResult is what one top-level guest test came to.
type guestResult struct {
	name    string
	action  string   // pass, fail or skip; "" if it did not finish
	skipped []string // the test itself or subtests of it that skipped
	output  strings.Builder
}

// guestResults collects the events of each top-level guest test, in the
// order they started.
func guestResults(evs []testEvent) []*guestResult {
	byName := map[string]*guestResult{}
	var order []*guestResult
	for _, e := range evs {
		if e.Test == "" {
			continue
		}
		top, sub, _ := strings.Cut(e.Test, "/")
		r, ok := byName[top]
		if !ok {
			r = &guestResult{name: top}
			byName[top] = r
			order = append(order, r)
		}
		switch e.Action {
		case "output":
			// Subtests' output goes with their top-level test.
			r.output.WriteString(e.Output)
		case "pass", "fail", "skip":
			if e.Action == "skip" {
				r.skipped = append(r.skipped, e.Test)
			}
			if sub == "" {
				r.action = e.Action
			}
		}
	}
	return order
}

// problem says why r fails the host run, or "" if it passed. In the VM
// there is nothing to skip for: a test or subtest that skipped fails.
func (r *guestResult) problem(serial string) string {
	var why string
	switch r.action {
	case "pass", "skip":
	case "fail":
		why = "failed in the guest"
	case "":
		why = fmt.Sprintf("did not finish in the guest (serial console in %s)", serial)
	default:
		why = fmt.Sprintf("ended with %q in the guest", r.action)
	}
	if len(r.skipped) > 0 {
		if why != "" {
			why += "; "
		}
		why += "skipped in the guest, which counts as a failure: " + strings.Join(r.skipped, ", ")
	}
	if why == "" {
		return ""
	}
	return why + ":\n" + r.output.String()
}

// runnerProblems are the failures that the guest's test runner (vmtest's
// gouinit) reported, or that reading its report met: a test binary that
// did not start, or exited non-zero, fails the host run even when its
// events look complete.
func runnerProblems(errs []runnerError, readErr error) []string {
	var out []string
	if readErr != nil {
		out = append(out, fmt.Sprintf("guest test runner: %v", readErr))
	}
	for _, e := range errs {
		if e.Binary != "" {
			out = append(out, fmt.Sprintf("guest test runner: %s: %s", e.Binary, e.Error))
		} else {
			out = append(out, fmt.Sprintf("guest test runner: %s", e.Error))
		}
	}
	return out
}

// reportEvents replays the guest's tests as subtests of t.
func reportEvents(t *testing.T, evs []testEvent, serial string) {
	t.Helper()
	results := guestResults(evs)
	bench := benchLines(serial)
	if len(results) == 0 && len(bench) == 0 {
		t.Fatalf("the guest ran no test and no benchmark (serial console in %s)", serial)
	}
	for _, l := range bench {
		t.Log(l)
	}
	for _, r := range results {
		t.Run(r.name, func(t *testing.T) {
			if p := r.problem(serial); p != "" {
				t.Error(p)
				return
			}
			t.Logf("in the guest:\n%s", r.output.String())
		})
	}
}
