package vmtests

import (
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
)

// TestBadInput boots the test kernel once and runs the bad-input tests of
// vmtests/guest/badinput inside it: malformed iptables blobs answered
// errno for errno like ip_tables, per-namespace tables, and a burst of
// garbage sockopt calls that the umh must survive.
func TestBadInput(t *testing.T) {
	vm.GuestTests{
		Pkg:     "github.com/bpfilter/bpfilter/vmtests/guest/badinput",
		Timeout: 15 * time.Minute,
		// The module's paths: namespace exits, signals while a caller
		// waits, concurrent callers (not the umh's blob validation).
		KmodTests: "^(TestNamespaces|TestSignalDuringCall|TestUmhSurvivesGarbage)$",
	}.Run(t)
}
