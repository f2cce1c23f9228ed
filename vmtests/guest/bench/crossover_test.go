//go:build vmguest

package bench

import (
	"math"
	"slices"
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// Lanes differ by themselves: in one run (2026-12-02), ip_tables' 1-rule
// lane delivered locally faster than the lane without any filter, in two
// runs in a row. So the packet-rate benchmarks are a crossover: each
// table has a pair of lanes alike, and each backend holds it in both,
// one placement after the other. A lane's own factor is then in both
// backends' rates once, and cancels in the geometric mean of the two
// placements' ratios.

// crossPair is a pair of lanes and the table that each backend holds in
// one of them, in turn.
type crossPair struct {
	rules int // or noFilter
	table string
	lanes [2]*lane
}

func newCrossPair(t *testing.T, rules int, table string) crossPair {
	t.Helper()
	return crossPair{rules: rules, table: table, lanes: [2]*lane{newLane(t), newLane(t)}}
}

// placement is, for each pair, the lane of each backend.
type placement []map[gt.Backend]*ppsLane

func (pl placement) lanes() []*ppsLane {
	var res []*ppsLane
	for _, pair := range pl {
		for _, be := range backends {
			res = append(res, pair[be])
		}
	}
	return res
}

// crossover runs run once per placement (0: ip_tables in each pair's
// first lane, bpfilter in its second; 1: the other way round). Before
// each, it sets the tables: ip_tables' while bpfilter is not loaded (it
// takes over the filter table's sockopts), then it loads bpfilter and
// sets bpfilter's. After each, check checks each lane's counters:
// bpfilter's, then, once bpfilter is gone, ip_tables' (had iptable_filter
// made a table in a lane that bpfilter served, or in one of others, it
// would show). Then ip_tables' tables are emptied and go with
// iptable_filter, so that in the next placement each lane runs its own
// backend's hooks only. It returns with iptable_filter loaded and
// bpfilter not.
func crossover(t *testing.T, pairs []crossPair, others []*ppsLane, run func(phase int, pl placement), check func(*testing.T, *ppsLane)) {
	t.Helper()
	t.Cleanup(func() { gt.Unload(t) })
	for phase := 0; phase < 2; phase++ {
		gt.Unload(t)
		gt.MustRun(t, "modprobe", "iptable_filter")
		pl := make(placement, len(pairs))
		for i, pair := range pairs {
			pl[i] = map[gt.Backend]*ppsLane{}
			for _, be := range backends {
				l := pair.lanes[phase]
				if be == gt.Bpfilter {
					l = pair.lanes[1-phase]
				}
				pl[i][be] = &ppsLane{be: be, rules: pair.rules, l: l, sent: map[string]int64{}, recvd: map[string]int64{}}
			}
			ipt := pl[i][gt.IPTables]
			ipt.l.dut.restore(t, pair.table)
			if !hasFilterName(t, ipt.l.dut) {
				t.Fatalf("%s: ip_tables has no filter table there", ipt)
			}
		}
		gt.MustRun(t, "insmod", gt.GoodKO)
		for i, pair := range pairs {
			pl[i][gt.Bpfilter].l.dut.restore(t, pair.table)
		}

		run(phase, pl)

		var bpf, ipt []*ppsLane
		for _, pair := range pl {
			bpf, ipt = append(bpf, pair[gt.Bpfilter]), append(ipt, pair[gt.IPTables])
		}
		for _, l := range bpf {
			check(t, l)
		}
		gt.MustRun(t, "rmmod", "bpfilter")
		noIPTablesFilter(t, append(slices.Clone(others), bpf...))
		for _, l := range ipt {
			check(t, l)
			// Emptied, the table no longer pins iptable_filter.
			l.l.dut.restore(t, gt.EmptyFilter)
		}
		gt.MustRun(t, "rmmod", "iptable_filter")
	}
	gt.MustRun(t, "modprobe", "iptable_filter")
	gt.Ensure(t, gt.IPTables)
}

// crossRatio is the ratio of a crossover from each placement's ratios
// (of its pairs of windows): the geometric mean of the two placements'
// medians, the range of all, and the lanes' own factor that cancelled
// (the first lane's rate over the second's, for the same table).
func crossRatio(r [2][]float64) (ratio, lo, hi, lane float64) {
	m0, m1 := medianF(r[0]), medianF(r[1])
	all := append(slices.Clone(r[0]), r[1]...)
	// Placement 0: bpfilter in the second lane; 1: in the first.
	return math.Sqrt(m0 * m1), slices.Min(all), slices.Max(all), math.Sqrt(m1 / m0)
}
