//go:build vmguest

package iptables

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// TestUnsupportedExtensionRefused: a rule bpfilter cannot enforce is never
// accepted. ip_tables takes `-m string --algo bm` (xt_string and ts_bm are
// in the test kernel; bpfilter accepts mark and the other extensions real
// firewalls use, not string); bpfilter refuses the replace, says why in
// one kernel log line, and keeps
// the table it had.
func TestUnsupportedExtensionRefused(t *testing.T) {
	defer gt.Use(t, gt.IPTables)
	rule := []string{"-A", "INPUT", "-m", "string", "--string", "foo", "--algo", "bm", "-j", "DROP"}

	gt.Use(t, gt.IPTables)
	gt.MustRun(t, "iptables-legacy", rule...)

	gt.Use(t, gt.Bpfilter)
	gt.MustRun(t, "iptables-legacy", "-A", "INPUT", "-p", "tcp", "-j", "ACCEPT")
	before := gt.MustRun(t, "iptables-legacy", "-S")
	k := gt.NewKmsg(t)
	out, err := gt.Run("iptables-legacy", rule...)
	if err == nil {
		t.Fatalf("bpfilter accepted a rule with the string match:\n%s", out)
	}
	t.Logf("iptables-legacy %s: %v: %s", strings.Join(rule, " "), err, strings.TrimSpace(out))
	k.Wait(t, regexp.MustCompile(`^bpfilter_umh: .*"string".*not supported`), 5*time.Second)
	if after := gt.MustRun(t, "iptables-legacy", "-S"); after != before {
		t.Fatalf("the table changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	gt.Ensure(t, gt.Bpfilter)
}
