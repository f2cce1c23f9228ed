package datapath

import (
	"fmt"
	"slices"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

func verdictName(v uint32) string {
	switch {
	case v == NFAccept:
		return "ACCEPT"
	case v == NFDrop:
		return "DROP"
	case v&0xFFFF == NFQueue:
		return fmt.Sprintf("QUEUE %d", v>>NFQueueShift)
	case v&0x7FFF == NFQueue:
		return fmt.Sprintf("QUEUE %d bypass", v>>NFQueueShift)
	}
	return fmt.Sprintf("verdict %#x", v)
}

// differential runs every packet through every hook's program, both
// classified and linear, and checks verdicts and counters against refEval.
// Both modes run even when the first fails: a failure in both is not the
// classifier's.
func differential(t *testing.T, tb *ipt.Table, packets []*pkt) {
	t.Helper()
	failed := t.Failed()
	for _, linear := range []bool{false, true} {
		l := load(t, tb, Options{Linear: linear})
		want := make([]ipt.Counters, len(tb.Entries))
		fails, accepted, total := 0, 0, 0
		for _, h := range Hooks() {
			for _, p := range packets {
				v := hookView(h, *p)
				var wantTrace, gotTrace []int
				exp := refEvalTrace(tb, h.Hook, &v, want, &wantTrace)
				total++
				if exp == NFAccept {
					accepted++
				}
				if got := l.runTrace(t, h, &v, &gotTrace); got != exp || !slices.Equal(gotTrace, wantTrace) {
					fails++
					if fails < 10 {
						t.Errorf("linear=%v %s: %v: got %s, callouts %v; want %s, callouts %v", linear, ipt.HookNames[h.Hook], &v,
							verdictName(got), gotTrace, verdictName(exp), wantTrace)
					}
				}
			}
		}
		got, err := l.objs.ReadCounters()
		if err != nil {
			t.Fatal(err)
		}
		matched := 0
		for _, c := range want {
			if c.Pcnt > 0 {
				matched++
			}
		}
		if !linear {
			t.Logf("%d/%d packets accepted, %d/%d entries matched some packet; %+v", accepted, total, matched, len(want), l.spec.Stats)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("linear=%v: entry %d (%s): counters %+v, want %+v", linear, i, entryDesc(tb, i), got[i], want[i])
			}
		}
		if t.Failed() && !failed {
			t.Logf("stats %+v", l.spec.Stats)
		}
		failed = t.Failed()
	}
}

func entryDesc(tb *ipt.Table, i int) string {
	c := tb.ChainOf(i)
	name := "-"
	if c != nil {
		name = c.Name
	}
	return fmt.Sprintf("chain %s offset %d", name, tb.Entries[i].Offset)
}
