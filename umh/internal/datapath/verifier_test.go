package datapath

import (
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// TestVerifierCost: the verifier's work does not depend on the table (the
// bpf_loop callbacks only call global functions, which it checks once),
// so no table can hit its limits.
func TestVerifierCost(t *testing.T) {
	needBPF(t)
	tables := map[string]*ipt.Table{
		"1 rule":          matchLast(t, 1, 1),
		"10000 rules":     matchLast(t, 10000, 5),
		"100 chains":      matchLastChains(t, 10000, 100),
		"user chains":     scenarioTable(t, "user chains"),
		"several matches": scenarioTable(t, "several matches"),
		"tcp options":     scenarioTable(t, "tcp options"),
	}
	// About 1,500 instructions, plus a fixed 15,000 for the tcp option
	// scan when a rule looks for an option: far from the 1,000,000 limit.
	const limit = 25000
	for name, tb := range tables {
		for _, linear := range []bool{false, true} {
			l := load(t, tb, Options{Linear: linear})
			for hook, p := range l.objs.Programs {
				info, err := p.Info()
				if err != nil {
					t.Fatal(err)
				}
				n, ok := info.VerifiedInstructions()
				if !ok {
					t.Fatalf("no verified instruction count")
				}
				if n > limit {
					t.Errorf("%s linear=%v %s: verifier processed %d instructions, more than %d", name, linear, ipt.HookNames[hook], n, limit)
				}
				t.Logf("%s linear=%v %s: %d", name, linear, ipt.HookNames[hook], n)
			}
		}
	}
}
