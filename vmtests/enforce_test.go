package vmtests

import (
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
)

// TestEnforce runs the life-cycle and scale tests of enforcement
// (vmtests/guest/enforce) inside the test kernel: rmmod leaves no BPF
// object whatever the umh does; SIGKILL of the umh, even in the middle of
// a replace, keeps the rules enforced and listed; a namespace's exit with
// the umh stopped; replacement under a UDP stream; interfaces made after
// the rules; 10,000 rules. bpfilter against ip_tables where ip_tables
// means something.
func TestEnforce(t *testing.T) {
	vm.GuestTests{
		Pkg:     "github.com/bpfilter/bpfilter/vmtests/guest/enforce",
		Timeout: 10 * time.Minute,
		// The module's paths: its exit, the programs it holds across a dead
		// umh, namespace exits, its hooks on new interfaces (not the scale
		// or load tests).
		KmodTests: "^(TestRmmodLeavesNothing|TestUmhKilled|TestKillMidReplace|TestNamespaceExit|TestNewInterface)$",
	}.Run(t)
}
