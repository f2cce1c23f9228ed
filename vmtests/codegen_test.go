package vmtests

import (
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
)

// TestCodegen runs the BPF code generator's tests inside the 6.1 test
// kernel, whose verifier is the one that matters (the host's may be
// newer). Built with -tags vmguest, they use smaller random and scale
// sets than on the host.
func TestCodegen(t *testing.T) {
	vm.GuestTests{
		Pkg:     "github.com/bpfilter/bpfilter/umh/internal/datapath",
		Timeout: 10 * time.Minute,
	}.Run(t)
}
