package vmtests

import (
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
)

// TestIPTables boots the test kernel once and runs the differential
// iptables-legacy tests of vmtests/guest/iptables inside it.
func TestIPTables(t *testing.T) {
	vm.GuestTests{
		Pkg:     "github.com/bpfilter/bpfilter/vmtests/guest/iptables",
		Timeout: 15 * time.Minute,
	}.Run(t)
}
