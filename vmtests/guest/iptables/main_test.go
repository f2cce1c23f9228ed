//go:build vmguest

package iptables

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// TestMain removes the kernel's in-tree bpfilter stub from this guest's
// /lib/modules: otherwise every iptables call made while ip_tables is the
// reference would load it on demand (request_module), and it would stand
// in the way of insmod of ours.
func TestMain(m *testing.M) {
	b, err := os.ReadFile(filepath.Join(gt.ModDir, "release"))
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	rel := string(b[:len(b)-1])
	stub := filepath.Join("/lib/modules", rel, "kernel/net/bpfilter/bpfilter.ko")
	if err := os.Remove(stub); err != nil && !os.IsNotExist(err) {
		fmt.Println(err)
		os.Exit(1)
	}
	if out, err := gt.Run("depmod", "-a", rel); err != nil {
		fmt.Println("depmod:", err, out)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
