package vmtests

import (
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
)

// TestTraffic boots the test kernel once and runs the differential
// traffic tests of vmtests/guest/traffic inside it: real packets through
// a router namespace whose filter table iptables-legacy sets, answered by
// ip_tables and then by bpfilter.
func TestTraffic(t *testing.T) {
	vm.GuestTests{
		Pkg:     "github.com/bpfilter/bpfilter/vmtests/guest/traffic",
		Timeout: 10 * time.Minute,
		// On the debug kernel: the hook's NF_QUEUE verdicts (only
		// TestQueue returns them) and interface names (TestBridge).
		KmodTests: "^(TestQueue|TestBridge)$",
	}.Run(t)
}
