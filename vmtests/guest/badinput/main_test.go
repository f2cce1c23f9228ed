//go:build vmguest

package badinput

import (
	"os"
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// Note that these tests run with the Go runtime's asynchronous preemption
// on: it sends SIGURG to threads that may be waiting in a sockopt call,
// which the module must take as the harmless signal it is.
func TestMain(m *testing.M) {
	if os.Getenv(memcgChildEnv) != "" {
		os.Exit(memcgChild())
	}
	gt.MainWithoutStub(m)
}
