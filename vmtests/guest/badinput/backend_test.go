//go:build vmguest

package badinput

import (
	"fmt"
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

var backends = []gt.Backend{gt.IPTables, gt.Bpfilter}

// knownTable is where every backend run starts: builtin chains with rules
// and policies, a rule with a match, two user chains that jump, so that
// the jump and loop mutations have material, and a user chain that nothing
// jumps to (ip_tables checks jumps and loops only where a hook leads).
const knownTable = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:alpha - [0:0]
:beta - [0:0]
:unused - [0:0]
-A INPUT -s 10.0.0.0/8 -j alpha
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -i eth0 -j beta
-A OUTPUT -d 192.168.0.1/32 -j DROP
-A alpha -p udp -j beta
-A alpha -s 10.1.0.0/16 -j RETURN
-A beta -d 1.2.3.4/32 -j DROP
-A unused -s 5.5.5.5/32 -j DROP
COMMIT
`

// knownRules is iptables-legacy -S of knownTable.
const knownRules = `-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N alpha
-N beta
-N unused
-A INPUT -s 10.0.0.0/8 -j alpha
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -i eth0 -j beta
-A OUTPUT -d 192.168.0.1/32 -j DROP
-A alpha -p udp -j beta
-A alpha -s 10.1.0.0/16 -j RETURN
-A beta -d 1.2.3.4/32 -j DROP
-A unused -s 5.5.5.5/32 -j DROP
`

// restoreTable installs rules (iptables-save format) in the filter table.
func restoreTable(t *testing.T, rules string) {
	t.Helper()
	if out, err := gt.Restore(rules); err != nil {
		t.Fatalf("iptables-legacy-restore: %v\n%s", err, out)
	}
}

// sameUmh tells whether pid is still the one and only bpfilter_umh.
func sameUmh(pid int) error {
	ps := gt.Procs("bpfilter_umh")
	if len(ps) != 1 || ps[0].Pid != pid || ps[0].State == "Z" {
		return fmt.Errorf("bpfilter_umh pid %d is not the only live umh any more: %+v", pid, ps)
	}
	return nil
}
