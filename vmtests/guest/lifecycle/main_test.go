//go:build vmguest

// Package lifecycle holds the guest side of the life-cycle VM tests:
// insmod, the health check, forwarding, rmmod, restart, on-demand loading;
// the bound on every wait for the umh (timeout_ms), and calls that
// non-fatal wakeups (group stop, ptrace) do not cut short.
// They run inside the test VM (vmtests/lifecycle_test.go boots it).
package lifecycle

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// probeEnv makes the test binary, re-executed under another uid, do one
// sockopt call and print its errno instead of running tests.
const probeEnv = "BPFILTER_PROBE"

func TestMain(m *testing.M) {
	if p := os.Getenv(probeEnv); p != "" {
		os.Exit(probe(p))
	}
	os.Exit(gt.RunTests(m))
}

// probe does "get:N" or "set:N" on a raw socket and prints "errno E".
func probe(spec string) int {
	var op string
	var opt int
	if _, err := fmt.Sscanf(spec, "%3s:%d", &op, &opt); err != nil {
		fmt.Println("bad probe", spec)
		return 2
	}
	fd, err := gt.RawSocket()
	if err != nil {
		// Unprivileged users cannot open raw sockets: a UDP socket
		// reaches the same IPPROTO_IP sockopt code.
		fd, err = udpSocket()
		if err != nil {
			fmt.Println("socket:", err)
			return 2
		}
	}
	buf := make([]byte, 84)
	if op == "get" {
		_, err = gt.Getsockopt(fd, opt, buf)
	} else {
		err = gt.Setsockopt(fd, opt, buf)
	}
	errno := 0
	if err != nil {
		errno = gt.ErrnoOf(err)
	}
	fmt.Println("errno " + strconv.Itoa(errno))
	return 0
}
