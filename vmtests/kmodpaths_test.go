package vmtests

import (
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
)

// TestKmodPaths boots the test kernel once and runs the tests of
// vmtests/guest/kmodpaths inside it: the module's paths that no other
// group reaches (a caller killed while the umh works on its request, a
// umh that answers nothing past bpfilter.timeout_ms, a namespace that
// exits while the umh is dead, an init that fails after the sockopt hook
// was published, rmmod while calls are in flight).
func TestKmodPaths(t *testing.T) {
	vm.GuestTests{
		Pkg:     "github.com/bpfilter/bpfilter/vmtests/guest/kmodpaths",
		Timeout: 10 * time.Minute,
	}.Run(t)
}
