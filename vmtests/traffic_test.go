package vmtests

import (
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
)

// TestTraffic boots the test kernel once and runs the differential
// traffic tests of vmtests/guest/traffic inside it: real packets through
// a router namespace whose filter table iptables-legacy sets, answered by
// ip_tables and then by bpfilter; the stateful tests (conntrack, REJECT,
// LOG, limit, nfacct and the other matches) and the real rulesets (ufw,
// Docker 27 and 28, kube-proxy, fail2ban, firewalld, a classic host
// firewall) among them.
func TestTraffic(t *testing.T) {
	vm.GuestTests{
		Pkg:     "github.com/bpfilter/bpfilter/vmtests/guest/traffic",
		Timeout: 15 * time.Minute,
		// On the debug kernel: the hook's NF_QUEUE verdicts (only
		// TestQueue returns them), interface names (TestBridge), and
		// the kernel-side extensions the module runs: conntrack
		// switched on and off per namespace, REJECT and LOG
		// (TestStateful, TestReject, TestLog).
		KmodTests: "^(TestQueue|TestBridge|TestStateful|TestReject|TestLog)$",
	}.Run(t)
}
