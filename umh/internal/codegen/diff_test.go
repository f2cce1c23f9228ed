package codegen

import (
	"fmt"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

var tcHooks = []Hook{InputTC(), ForwardTC(), OutputTC()}

func verdictName(v uint32) string {
	switch v {
	case tcActOK:
		return "ACCEPT"
	case tcActShot:
		return "DROP"
	}
	return fmt.Sprintf("tc%d", v)
}

// differential runs every packet through every hook's program, both
// classified and linear, and checks verdicts and counters against refEval.
func differential(t *testing.T, tb *ipt.Table, packets []*pkt) {
	t.Helper()
	for _, linear := range []bool{false, true} {
		l := load(t, tb, Options{Linear: linear})
		want := make([]ipt.Counters, len(tb.Entries))
		fails, accepted, total := 0, 0, 0
		for _, h := range tcHooks {
			for _, p := range packets {
				v := hookView(h, *p)
				exp := uint32(tcActShot)
				if refEval(tb, h.Hook, &v, want) {
					exp = tcActOK
				}
				total++
				if exp == tcActOK {
					accepted++
				}
				if got := l.run(t, h, &v); got != exp {
					fails++
					if fails < 10 {
						t.Errorf("linear=%v %s: %v: got %s, want %s", linear, ipt.HookNames[h.Hook], &v, verdictName(got), verdictName(exp))
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
		if t.Failed() {
			t.Logf("stats %+v", l.spec.Stats)
			return
		}
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
