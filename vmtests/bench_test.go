//go:build bench

package vmtests

import (
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
)

// TestBench boots the test kernel and runs the benchmarks of
// vmtests/guest/bench inside it (`make bench`); it is not part of
// `make test`. The numbers are in the guest output.
func TestBench(t *testing.T) {
	vm.GuestTests{
		Pkg:     "github.com/bpfilter/bpfilter/vmtests/guest/bench",
		Timeout: 20 * time.Minute,
	}.Run(t)
}
