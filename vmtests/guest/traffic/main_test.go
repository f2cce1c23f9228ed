//go:build vmguest

package traffic

import (
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

func TestMain(m *testing.M) { gt.MainWithoutStub(m) }
