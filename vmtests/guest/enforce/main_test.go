//go:build vmguest

// Package enforce holds the life-cycle and scale tests of enforcement
// (issue 4), run inside the VM: real UDP between network namespaces joined
// by veth pairs, filtered by the tables that iptables-legacy installs
// through bpfilter, with ip_tables in the same VM as the reference where a
// reference means something.
//
//   - TestRmmodLeavesNothing: every BPF program, map, BTF object and link
//     that bpfilter created, and every filter and clsact qdisc it added, is
//     gone after rmmod, in three namespaces; a clsact qdisc and a filter
//     that were there before stay.
//   - TestUmhKilled: SIGKILL of the umh leaves the rules enforced, and the
//     restarted umh reports the same rules and counters as ip_tables would.
//   - TestReplaceUnderLoad: 100 replacements of the table between two
//     differently built rulesets under a steady UDP stream: no dropped
//     packet arrives, no accepted one is lost.
//   - TestNewInterface: an interface created after the rules is filtered.
//   - TestScale: 10,000 rules, in INPUT and over 100 user chains.
//   - TestNamespaceExit: a namespace's BPF objects go with the namespace,
//     which bpfilter does not keep alive.
package enforce

import (
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

func TestMain(m *testing.M) { gt.MainWithoutStub(m) }
