//go:build vmguest

package iptables

import (
	"fmt"
	"os"
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

func TestMain(m *testing.M) {
	if err := gt.RemoveStub(gt.ReleaseOrExit()); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
