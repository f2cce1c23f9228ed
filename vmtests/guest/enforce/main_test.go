//go:build vmguest

// Package enforce holds the life-cycle and scale tests of enforcement, run
// inside the VM: real UDP between network namespaces joined by veth pairs,
// judged at netfilter's hooks by the programs that the module holds for
// the tables iptables-legacy installs through bpfilter, with ip_tables in
// the same VM as the reference where a reference means something.
//
//   - TestRmmodLeavesNothing: every BPF program, map, BTF object and link
//     of bpfilter's is gone after rmmod, with rules in three namespaces,
//     and dropped packets pass; with the umh running, stopped or dead.
//   - TestUmhKilled: a stream across SIGKILL of the umh is judged without a
//     gap; the restarted umh reports the same rules, and counters that
//     include what was counted while no umh ran.
//   - TestKillMidReplace: the umh killed at a random moment of a 3,000-rule
//     restore: the old table or the new one is in force, and listed.
//   - TestNamespaceExit: a namespace's programs go with it while the umh
//     is stopped; the umh, continued, goes on.
//   - TestReplaceUnderLoad: 40 replacements of the table between two
//     differently built rulesets under a steady UDP stream: no dropped
//     packet arrives, no accepted one is lost.
//   - TestNewInterface: an interface and a namespace made after the rules
//     are judged from their first packet.
//   - TestScale: 10,000 rules, in INPUT and over 100 user chains.
package enforce

import (
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

func TestMain(m *testing.M) { gt.MainWithoutStub(m) }
