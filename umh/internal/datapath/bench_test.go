package datapath

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/cilium/ebpf"
)

// benchAll is set to a non-empty string by `make bench`, which links the
// guest's test binary with -ldflags -X (vmtests/bench_test.go). The VM's
// test runner always passes -test.bench=., so TestCodegen runs
// BenchmarkMatchLast too: without benchAll, the VM measures only the
// single-shape table at 1 and 10,000 rules, which keeps `make vmtest`
// short. On the host the benchmark runs only when asked for, in full.
var benchAll string

// matchLastSizes are the rule counts of the per-packet benchmark.
var matchLastSizes = []int{1, 100, 1000, 10000}

// matchLastTables are the tables of the per-packet benchmark: the
// classifier with rules of one shape, the same rules spread over 100 user
// chains, rules of five shapes (one of them port ranges, which stay
// linear), and the linear walk for comparison.
var matchLastTables = []struct {
	name   string
	linear bool
	tb     func(t testing.TB, n int) *ipt.Table
}{
	{"classified", false, func(t testing.TB, n int) *ipt.Table { return matchLast(t, n, 1) }},
	{"classified-100chains", false, func(t testing.TB, n int) *ipt.Table {
		if n < 100 {
			return matchLastChains(t, n, 1)
		}
		return matchLastChains(t, n, 100)
	}},
	{"classified-5shapes", false, func(t testing.TB, n int) *ipt.Table { return matchLast(t, n, 5) }},
	{"linear", true, func(t testing.TB, n int) *ipt.Table { return matchLast(t, n, 1) }},
}

// matchLastPackets are the packets of the per-packet benchmark: the one
// that the last rule accepts, and two crafted to hit what was the slow
// path of a packet that a match could hotdrop (risky), which the last
// rule hotdrops: a tcp header cut to 12 bytes, and a tcp fragment at
// offset 1. They run the classified tables at 1 and 10,000 rules only.
var matchLastPackets = []struct {
	name string // suffix of the table's name
	p    func() *pkt
}{
	{"", lastPacket},
	{"-shorttcp", func() *pkt {
		p := lastPacket()
		p.l4 = p.l4[:12]
		return p
	}},
	{"-frag1", func() *pkt {
		p := lastPacket()
		p.fragOff = 1
		return p
	}},
}

// BenchmarkMatchLast is the per-packet cost of the INPUT program for
// 1..10,000 rules with only the last one matching, by BPF_PROG_TEST_RUN:
// each iteration runs the program `repeat` times in the kernel, which
// reports the mean time of one run. Metrics: ns/packet, the median of
// those means over the iterations (a machine shared with other work
// stalls now and then, and a median shrugs that off); and, beyond 1 rule,
// x1rule, the median over the iterations of that cost divided by the cost
// of the same table at 1 rule for the same packet, measured right after
// it, so that both sides of each ratio meet the same machine. The risky
// packets (matchLastPackets) are named by a suffix of the table's name
// (classified-shorttcp/10000); each verdict is the reference's (refEval).
func BenchmarkMatchLast(b *testing.B) {
	needBPF(b)
	tables, sizes := matchLastTables, matchLastSizes
	if inVM && benchAll == "" {
		tables, sizes = tables[:1], []int{1, 10000}
	}
	run := func(b *testing.B, prog *ebpf.Program, frame []byte, want uint32, repeat int) time.Duration {
		ret, d, err := prog.Benchmark(frame, repeat, nil)
		if err != nil {
			b.Fatal(err)
		}
		if ret != want {
			b.Fatalf("verdict %s, want %s", verdictName(ret), verdictName(want))
		}
		return d
	}
	// want is the reference's verdict for p at INPUT.
	want := func(tb *ipt.Table, p *pkt) uint32 {
		return refEval(tb, ipt.HookLocalIn, p, make([]ipt.Counters, len(tb.Entries)))
	}
	for _, pk := range matchLastPackets {
		p := pk.p()
		frame := p.frame()
		for _, v := range tables {
			if pk.name != "" && v.linear {
				continue
			}
			tb1 := v.tb(b, 1)
			one := load(b, tb1, Options{Linear: v.linear}).objs.Program(ipt.HookLocalIn)
			want1 := want(tb1, p)
			for _, n := range sizes {
				if pk.name != "" && n != 1 && n != 10000 {
					continue
				}
				b.Run(fmt.Sprintf("%s%s/%d", v.name, pk.name, n), func(b *testing.B) {
					tb := v.tb(b, n)
					wantN := want(tb, p)
					prog := load(b, tb, Options{Linear: v.linear}).objs.Program(ipt.HookLocalIn)
					repeat := 20000
					if v.linear && n >= 1000 {
						repeat = 200
					}
					per := make([]time.Duration, 0, b.N)
					var ratios []float64
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						d := run(b, prog, frame, wantN, repeat)
						per = append(per, d)
						if n > 1 {
							ratios = append(ratios, float64(d)/float64(run(b, one, frame, want1, 20000)))
						}
					}
					b.StopTimer()
					b.ReportMetric(float64(median(per).Nanoseconds()), "ns/packet")
					if n > 1 {
						b.ReportMetric(medianF(ratios), "x1rule")
					}
				})
			}
		}
	}
}

// medianF is median for float64s.
func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	m := len(v) / 2
	if len(v)%2 == 0 {
		return (v[m-1] + v[m]) / 2
	}
	return v[m]
}

// median of ds (which it sorts); the mean of the middle two for an even count.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	m := len(ds) / 2
	if len(ds)%2 == 0 {
		return (ds[m-1] + ds[m]) / 2
	}
	return ds[m]
}

// BenchmarkCompileLoad is the umh's part of a restore of 10,000 rules of
// one shape (as TestRestoreToEnforcement restores): Compile (the table to
// programs and map contents) and Load (maps created and filled, programs
// through the verifier), each timed on its own. In the VM it runs only
// under `make bench`.
func BenchmarkCompileLoad(b *testing.B) {
	needBPF(b)
	if inVM && benchAll == "" {
		return // not skipped: the VM harness fails a guest test that skips
	}
	tb := matchLast(b, 10000, 1)
	var compile, load []time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		spec, err := Compile(tb, Options{})
		if err != nil {
			b.Fatal(err)
		}
		compiled := time.Now()
		objs, err := spec.Load(nil)
		if err != nil {
			b.Fatal(err)
		}
		loaded := time.Now()
		objs.Close()
		compile = append(compile, compiled.Sub(start))
		load = append(load, loaded.Sub(compiled))
	}
	b.ReportMetric(float64(median(compile).Microseconds())/1000, "ms/compile")
	b.ReportMetric(float64(median(load).Microseconds())/1000, "ms/load")
}

// BenchmarkSmallTables is the per-packet cost of the INPUT program, by
// BPF_PROG_TEST_RUN as BenchmarkMatchLast, for the tables whose cost is
// closest to ip_tables' own: no rules (the policies only: a straight-line
// program), and one rule that matches (matchLast at 1).
func BenchmarkSmallTables(b *testing.B) {
	needBPF(b)
	frame := lastPacket().frame()
	for _, c := range []struct {
		name string
		tb   func(t testing.TB) *ipt.Table
	}{
		{"empty", func(t testing.TB) *ipt.Table { return buildTable(t, nil) }},
		{"1rule", func(t testing.TB) *ipt.Table { return matchLast(t, 1, 1) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			prog := load(b, c.tb(b), Options{}).objs.Program(ipt.HookLocalIn)
			per := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ret, d, err := prog.Benchmark(frame, 20000, nil)
				if err != nil {
					b.Fatal(err)
				}
				if ret != NFAccept {
					b.Fatalf("verdict %s", verdictName(ret))
				}
				per = append(per, d)
			}
			b.StopTimer()
			b.ReportMetric(float64(median(per).Nanoseconds()), "ns/packet")
		})
	}
}
