//go:build vmguest

// Package kmodpaths holds the guest side of the VM tests of the module's
// rarely taken paths (vmtests/kmodpaths_test.go boots the VM): a caller
// killed while the umh works on its request, a umh that answers nothing
// past the module's bound, a network namespace that exits while the umh
// is dead, an init that fails after the sockopt hook
// was published, and rmmod while calls are in flight.
//
// The guest's module directory holds the kernel's in-tree bpfilter stub
// (net/bpfilter/bpfilter.ko). Without a bpfilter module every iptables
// sockopt call makes the kernel request_module("bpfilter"), which would
// load that stub: its C umh answers every call with ENOPROTOOPT (so calls
// still end in ip_tables or ENOPROTOOPT), but it would then hold the name
// bpfilter, and insmod of ours would fail with EEXIST, as chance has it.
// TestMain removes it (gt.MainWithoutStub): on-demand loading then finds
// nothing, the kernel's modprobe fails, and a call without bpfilter
// always gets the kernel's fallback. ip_tables is unloaded as well before
// the tests of calls without bpfilter, so that the fallback is exactly
// ENOPROTOOPT.
package kmodpaths

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// probeEnv makes the test binary, run as a child, make one raw GET_INFO
// call of the filter table once it can read a byte from its stdin, and
// print "errno E" instead of running tests.
const probeEnv = "BPFILTER_KMODPATHS_PROBE"

func TestMain(m *testing.M) {
	if os.Getenv(probeEnv) != "" {
		os.Exit(probe())
	}
	gt.MainWithoutStub(m)
}

func probe() int {
	fd, err := gt.RawSocket()
	if err != nil {
		fmt.Println("socket:", err)
		return 2
	}
	if _, err := os.Stdin.Read(make([]byte, 1)); err != nil {
		fmt.Println("stdin:", err)
		return 2
	}
	_, err = getInfo(fd)
	fmt.Println("errno " + strconv.Itoa(gt.ErrnoOf(err)))
	return 0
}
