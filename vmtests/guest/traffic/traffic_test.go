//go:build vmguest

// Package traffic holds the differential traffic tests: real packets
// through a router (the VM's initial network namespace, see nettest)
// whose filter table is set by iptables-legacy, once answered by the
// kernel's ip_tables and once by bpfilter, in the same VM. The same
// probes must pass, the same must be dropped, and iptables-legacy -L -v -x
// must print the same counters.
package traffic

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
	nt "github.com/bpfilter/bpfilter/vmtests/guest/nettest"
)

// outcome is what one rule set did on one backend.
type outcome struct {
	restoreErr string // iptables-legacy-restore's output if it failed
	res        []nt.Result
	sendErr    string // nettest.Send's complaint, if any
	list       string // iptables-legacy -t filter -L -v -x -n
}

var backends = []gt.Backend{gt.IPTables, gt.Bpfilter}

// TestTraffic builds one topology, then for each backend in turn (one
// switch each): the seed 002 scenario, then every rule set with the fixed
// probe list. Then it compares the backends rule set by rule set.
func TestTraffic(t *testing.T) {
	checkRuleSets(t)
	topo := nt.Setup(t)
	defer gt.Use(t, gt.IPTables) // unload bpfilter with its programs attached

	seeds := map[gt.Backend]string{}
	got := map[gt.Backend][]outcome{}
	for _, b := range backends {
		start := time.Now()
		t.Run(b.String(), func(t *testing.T) {
			gt.Use(t, b)
			// Without bpfilter loaded, each iptables call would first
			// fork a modprobe for it: load what ip_tables may ask for,
			// then disable request_module (both backends alike).
			gt.MustRun(t, "modprobe", append([]string{"-a"}, gt.Extensions...)...)
			gt.NoModprobe(t)
			t.Run("seed002", func(t *testing.T) { seeds[b] = seed002(t, topo) })
			got[b] = runRuleSets(t, topo)
			gt.Ensure(t, b)
		})
		t.Logf("%s: seed 002 and %d rule sets of %d probes in %v", b, len(ruleSets), len(probes),
			time.Since(start).Round(time.Millisecond))
	}
	if len(got[gt.IPTables]) != len(ruleSets) || len(got[gt.Bpfilter]) != len(ruleSets) {
		t.Fatal("a backend did not run every rule set")
	}

	if seeds[gt.IPTables] != seeds[gt.Bpfilter] {
		t.Errorf("seed 002: iptables-legacy -L -v -x -n differs\nip_tables:\n%s\nbpfilter:\n%s",
			seeds[gt.IPTables], seeds[gt.Bpfilter])
	}
	for i, rs := range ruleSets {
		t.Run("matrix/"+strings.ReplaceAll(rs.name, " ", "_"), func(t *testing.T) {
			compare(t, rs, got[gt.IPTables][i], got[gt.Bpfilter][i])
		})
	}
}

// runRuleSets restores each rule set, sends the probes, and lists the table.
func runRuleSets(t *testing.T, topo *nt.Topology) []outcome {
	t.Helper()
	var outs []outcome
	for _, rs := range ruleSets {
		var o outcome
		if out, err := gt.Restore(rs.restore()); err != nil {
			o.restoreErr = fmt.Sprintf("%v: %s", err, out)
		}
		start := time.Now()
		res, err := topo.Send(probes)
		if err != nil {
			o.sendErr = err.Error()
		}
		if slices.Equal(rs.pass, all) {
			t.Logf("%s: Send of %d probes that all pass took %v", rs.name, len(probes), time.Since(start).Round(100*time.Microsecond))
		}
		if res == nil {
			res = make([]nt.Result, len(probes))
		}
		o.res = res
		out, err := gt.Run("iptables-legacy", "-t", "filter", "-L", "-v", "-x", "-n")
		if err != nil {
			out = fmt.Sprintf("%v: %s", err, out)
		}
		o.list = out
		outs = append(outs, o)
	}
	return outs
}

func compare(t *testing.T, rs ruleSet, want, got outcome) {
	t.Helper()
	if want.restoreErr != "" {
		t.Fatalf("ip_tables refused the rule set: %s\n%s", want.restoreErr, rs.restore())
	}
	if want.sendErr != "" {
		t.Errorf("probes under ip_tables: %s", want.sendErr)
	}
	if got.restoreErr != "" {
		t.Errorf("bpfilter refused the rule set: %s\n%s", got.restoreErr, rs.restore())
	}
	if got.sendErr != "" {
		t.Errorf("probes under bpfilter: %s", got.sendErr)
	}

	// The reference run must show the rules at work.
	for _, e := range []struct {
		names   []string
		arrived bool
	}{{rs.pass, true}, {rs.drop, false}} {
		for i, p := range probes {
			if !slices.Contains(e.names, p.Name) && !slices.Equal(e.names, all) {
				continue
			}
			if want.res[i].Arrived != e.arrived {
				t.Errorf("ip_tables: probe %s %s, the rule set says it %s",
					p.Name, fate(want.res[i].Arrived), fate(e.arrived))
			}
		}
	}

	var diff []string
	for i, p := range probes {
		if want.res[i].Arrived != got.res[i].Arrived {
			diff = append(diff, fmt.Sprintf("%s (%v %v->%v, %d bytes): ip_tables %s, bpfilter %s",
				p.Name, p.Path, p.Src, p.Dst, p.Len(), fate(want.res[i].Arrived), fate(got.res[i].Arrived)))
		}
	}
	if len(diff) > 0 {
		t.Errorf("%d of %d probes differ:\n%s\nrule set:\n%s", len(diff), len(probes), strings.Join(diff, "\n"), rs.restore())
	}
	if want.list != got.list {
		t.Errorf("iptables-legacy -t filter -L -v -x -n differs\nip_tables:\n%s\nbpfilter:\n%s", want.list, got.list)
	}
	// Not compared: a DUT send that OUTPUT drops fails with EPERM under
	// ip_tables, while a drop at TC egress need not fail it.
	if w, g := sendErrs(want.res), sendErrs(got.res); w != g {
		t.Logf("failed DUT sends: ip_tables %s; bpfilter %s", w, g)
	}
	passed := 0
	for _, r := range want.res {
		if r.Arrived {
			passed++
		}
	}
	t.Logf("%d of %d probes passed under ip_tables", passed, len(probes))
}

// sendErrs sums up the failed sends of res.
func sendErrs(res []nt.Result) string {
	n := map[string]int{}
	for _, r := range res {
		if r.SendErr != nil {
			n[r.SendErr.Error()]++
		}
	}
	if len(n) == 0 {
		return "none"
	}
	var out []string
	for e, k := range n {
		out = append(out, fmt.Sprintf("%d x %s", k, e))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

func fate(arrived bool) string {
	if arrived {
		return "passed"
	}
	return "was dropped"
}

// checkRuleSets makes sure every rule set names real probes, and that
// each (but the two baselines) expects at least one probe to pass and one
// to be dropped.
func checkRuleSets(t *testing.T) {
	t.Helper()
	if len(ruleSets) < 40 {
		t.Fatalf("only %d rule sets", len(ruleSets))
	}
	names := map[string]bool{}
	for _, p := range probes {
		if names[p.Name] {
			t.Fatalf("probe %s twice", p.Name)
		}
		names[p.Name] = true
	}
	seen := map[string]bool{}
	for _, rs := range ruleSets {
		if seen[rs.name] {
			t.Fatalf("rule set %q twice", rs.name)
		}
		seen[rs.name] = true
		baseline := slices.Equal(rs.pass, all) || slices.Equal(rs.drop, all)
		if !baseline && (len(rs.pass) == 0 || len(rs.drop) == 0) {
			t.Errorf("rule set %q: expects no passing or no dropped probe", rs.name)
		}
		for _, n := range append(append([]string{}, rs.pass...), rs.drop...) {
			if n != "*" && !names[n] {
				t.Errorf("rule set %q: no probe %s", rs.name, n)
			}
			if slices.Contains(rs.pass, n) && slices.Contains(rs.drop, n) {
				t.Errorf("rule set %q: probe %s both passes and is dropped", rs.name, n)
			}
		}
	}
}
