//go:build vmguest

package iptables

import (
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

func TestMain(m *testing.M) { gt.MainWithoutStub(m) }
