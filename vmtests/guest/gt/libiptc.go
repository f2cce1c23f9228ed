package gt

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
)

// NoflushKeepsPolicies tells whether this guest's iptables-legacy keeps
// the built-in chains' policy counters when a commit leaves the policies
// alone (iptables-legacy-restore --noflush, iptables-legacy -A), as
// ip_tables shows them. libiptc reads each policy's counters with the
// table and maps them, for SET_ADD_COUNTERS after SET_REPLACE, as
// COUNTER_MAP_ZEROED until iptables 1.8.10: it adds the old counters that
// the replace handed back minus those it read, which is what was counted
// in between, so the policies start again from about 0. iptables 1.8.10
// reverted that (netfilter bugzilla 912) to COUNTER_MAP_NORMAL_MAP, which
// adds the old counters whole.
func NoflushKeepsPolicies(t testing.TB) bool {
	t.Helper()
	out := MustRun(t, "iptables-legacy", "--version")
	m := regexp.MustCompile(`v(\d+)\.(\d+)\.(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("iptables-legacy --version: no version in %q", out)
	}
	var v [3]int
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	keeps := v[0] > 1 || v[0] == 1 && (v[1] > 8 || v[1] == 8 && v[2] >= 10)
	t.Logf("iptables-legacy %s: a commit that leaves the policies alone %s their counters",
		fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]), map[bool]string{true: "keeps", false: "restarts"}[keeps])
	return keeps
}
