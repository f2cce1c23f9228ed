package vmtests

import (
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
)

// TestEnforce runs the life-cycle and scale tests of enforcement
// (vmtests/guest/enforce) inside the test kernel: rmmod leaves no BPF
// object, filter or qdisc; SIGKILL of the umh keeps filtering, rules and
// counters; replacement under a UDP stream; interfaces made after the
// rules; 10,000 rules; namespace exit. bpfilter against ip_tables where
// ip_tables means something.
func TestEnforce(t *testing.T) {
	vm.GuestTests{
		Pkg:     "github.com/bpfilter/bpfilter/vmtests/guest/enforce",
		Timeout: 10 * time.Minute,
		// The module's paths: its shutdown, a dead umh's restart, namespace
		// exits, the interface notifier (not the scale or load tests).
		KmodTests: "^(TestRmmodLeavesNothing|TestUmhKilled|TestNamespaceExit|TestNewInterface)$",
	}.Run(t)
}
