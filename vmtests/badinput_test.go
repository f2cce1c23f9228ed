package vmtests

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
)

// TestBadInput boots the test kernel once and runs the bad-input tests of
// vmtests/guest/badinput inside it: malformed iptables blobs answered
// errno for errno like ip_tables, oversize requests, memory charged to
// the caller, the umh's private sockopts refused to everyone else,
// per-namespace tables, and a burst of garbage sockopt calls that the umh
// must survive. First, on the host: the umh's source never touches
// another process's memory.
func TestBadInput(t *testing.T) {
	t.Run("umh_never_touches_caller_memory", umhNeverTouchesCallerMemory)
	vm.GuestTests{
		Pkg:     "github.com/bpfilter/bpfilter/vmtests/guest/badinput",
		Timeout: 15 * time.Minute,
		// The module's paths: namespace exits, signals while a caller
		// waits, concurrent callers, the module's copies of the
		// caller's memory and its bounds, its private sockopts (not
		// the umh's blob validation).
		KmodTests: "^(TestNamespaces|TestSignalDuringCall|TestUmhSurvivesGarbage|TestOversizeRequests|" +
			"TestCountersPointerUnmapped|TestPrivateSockopts|TestMemoryChargedToCaller)$",
	}.Run(t)
}

// umhNeverTouchesCallerMemory: the module copies the caller's buffer in
// and out itself; no file of umh/ may name process_vm_readv/writev (the
// syscalls or x/sys/unix's ProcessVMReadv/ProcessVMWritev).
func umhNeverTouchesCallerMemory(t *testing.T) {
	var hits []string
	n := 0
	err := filepath.WalkDir("../umh", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		for i, l := range strings.Split(string(b), "\n") {
			low := strings.ToLower(l)
			if strings.Contains(low, "process_vm") || strings.Contains(low, "processvm") {
				hits = append(hits, path+":"+strconv.Itoa(i+1)+": "+strings.TrimSpace(l))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no file under ../umh")
	}
	if len(hits) > 0 {
		t.Errorf("umh/ reaches into other processes' memory:\n%s", strings.Join(hits, "\n"))
	}
}
