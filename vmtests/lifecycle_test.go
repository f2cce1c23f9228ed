package vmtests

import (
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
)

// TestLifecycle boots the test kernel once and runs the life-cycle tests
// of vmtests/guest/lifecycle inside it.
func TestLifecycle(t *testing.T) {
	vm.GuestTests{
		Pkg:     "github.com/bpfilter/bpfilter/vmtests/guest/lifecycle",
		Timeout: 10 * time.Minute,
	}.Run(t)
}
