package vmtests

import (
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
)

// TestAttach runs the attach layer's tests inside the 6.1 test kernel:
// real UDP traffic between network namespaces joined by veth pairs,
// filtered by codegen's programs on clsact/cls_bpf (INPUT, OUTPUT,
// FORWARD through a router namespace), atomic replacement and detach.
func TestAttach(t *testing.T) {
	vm.GuestTests{
		Pkg:     "github.com/bpfilter/bpfilter/umh/internal/attach",
		Timeout: 10 * time.Minute,
	}.Run(t)
}
