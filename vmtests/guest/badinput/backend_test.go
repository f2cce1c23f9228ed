//go:build vmguest

package badinput

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// backend is who answers the filter table.
type backend int

const (
	ipTables backend = iota
	bpfilter
)

var backends = []backend{ipTables, bpfilter}

func (b backend) String() string {
	if b == bpfilter {
		return "bpfilter"
	}
	return "ip_tables"
}

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

const emptyFilter = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"

// runIn runs a command with stdin and returns its combined output.
func runIn(stdin string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// restoreTable installs rules (iptables-save format) in the filter table.
func restoreTable(t *testing.T, rules string) {
	t.Helper()
	if out, err := runIn(rules, "iptables-legacy-restore"); err != nil {
		t.Fatalf("iptables-legacy-restore: %v\n%s", err, out)
	}
}

// use makes b answer for a fresh filter table, as vmtests/guest/iptables
// does. With bpfilter, ip_tables is loaded as well (but not
// iptable_filter): a call that bpfilter hands on (a table it does not
// serve) then gets ip_tables' answer, as it would on a real system.
func use(t *testing.T, b backend) {
	t.Helper()
	if gt.Loaded("bpfilter") {
		gt.MustRun(t, "rmmod", "bpfilter")
	}
	if gt.Loaded("iptable_filter") {
		// ip_tables pins iptable_filter while it holds more than
		// the initial entries: empty it first.
		if out, err := runIn(emptyFilter, "iptables-legacy-restore"); err != nil {
			t.Fatalf("emptying the filter table: %v\n%s", err, out)
		}
		gt.MustRun(t, "rmmod", "iptable_filter")
	}
	if gt.Loaded("ip_tables") {
		gt.MustRun(t, "rmmod", "ip_tables")
	}
	switch b {
	case ipTables:
		gt.MustRun(t, "modprobe", "iptable_filter")
	case bpfilter:
		gt.MustRun(t, "insmod", gt.GoodKO)
		gt.MustRun(t, "modprobe", "ip_tables")
	}
	ensure(t, b)
}

// ensure fails t if the backend that answers is not b.
func ensure(t *testing.T, b backend) {
	t.Helper()
	if err := check(b); err != nil {
		t.Fatal(err)
	}
}

// check tells whether b is still the one that answers: a bpfilter that
// fell back to ip_tables for the filter table would have made ip_tables
// load iptable_filter, and the comparison would be void.
func check(b backend) error {
	switch {
	case b == bpfilter && gt.Loaded("iptable_filter"):
		return fmt.Errorf("iptable_filter got loaded while bpfilter was to answer: bpfilter fell back to ip_tables")
	case b == bpfilter && !gt.Loaded("bpfilter"):
		return fmt.Errorf("bpfilter is not loaded")
	case b == ipTables && !gt.Loaded("iptable_filter"):
		return fmt.Errorf("iptable_filter is not loaded for the reference run")
	case b == ipTables && gt.Loaded("bpfilter"):
		return fmt.Errorf("bpfilter is loaded during the reference run")
	}
	return nil
}

// umhPid returns the pid of the one live bpfilter_umh.
func umhPid(t *testing.T) int {
	t.Helper()
	var live []gt.Proc
	for _, p := range gt.Procs("bpfilter_umh") {
		if p.State != "Z" {
			live = append(live, p)
		}
	}
	if len(live) != 1 {
		t.Fatalf("want one live bpfilter_umh, have %+v (all: %+v)", live, gt.Procs("bpfilter_umh"))
	}
	return live[0].Pid
}

// sameUmh tells whether pid is still the one and only bpfilter_umh.
func sameUmh(pid int) error {
	ps := gt.Procs("bpfilter_umh")
	if len(ps) != 1 || ps[0].Pid != pid || ps[0].State == "Z" {
		return fmt.Errorf("bpfilter_umh pid %d is not the only live umh any more: %+v", pid, ps)
	}
	return nil
}
