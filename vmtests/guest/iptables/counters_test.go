//go:build vmguest

package iptables

import (
	"regexp"
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

var policyLineRe = regexp.MustCompile(`(?m)^Chain (INPUT|FORWARD|OUTPUT) \(policy \w+ (\d+) packets, (\d+) bytes\)$`)

// TestNoflushAppendPolicyCounters: the scenarios "restore with counters,
// then --noflush appends" compare the backends; this one says what both
// do with the policies' counters, as TestNonFatalWakeups (lifecycle)
// expects on its 10,000-rule table: with this guest's libiptc, kept or
// restarted (gt.NoflushKeepsPolicies). No packet crosses the hooks in
// between, so a restart is 0 exactly.
func TestNoflushAppendPolicyCounters(t *testing.T) {
	defer gt.Use(t, gt.IPTables)
	keeps := gt.NoflushKeepsPolicies(t)
	restored := map[string]string{"INPUT": "3 300", "FORWARD": "4 400", "OUTPUT": "5 500"}
	for _, args := range [][]string{{"--noflush"}, {"--noflush", "-c"}} {
		for _, b := range backends() {
			sc := scenario{steps: noflushAppend(args...)}
			rs := runScenario(t, sc, b)
			// Step 1 lists the table as restored, step 3 after the append.
			for i, when := range map[int]string{1: "restored", 3: "appended"} {
				got := policyLineRe.FindAllStringSubmatch(rs[i].out, -1)
				if len(got) != 3 {
					t.Fatalf("%s %v: %d policy lines in\n%s", b, args, len(got), rs[i].out)
				}
				for _, m := range got {
					want := restored[m[1]]
					if i == 3 && !keeps {
						want = "0 0"
					}
					if have := m[2] + " " + m[3]; have != want {
						t.Errorf("%s, %v, %s: %s policy counters %s, want %s", b, args, when, m[1], have, want)
					}
				}
			}
			t.Logf("%s, iptables-legacy-restore %v, then iptables-legacy -L -v -x -n:\n%s", b, args, rs[3].out)
		}
	}
}
