package datapath

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// Port ranges are classified by the aligned blocks they touch
// (portBlocks): an entry is in one bucket per block, and entries of
// different groups interleave. These tables put runs of ranges of every
// width class, at the edges of the port space, overlapping, empty,
// inverted, on both ports, next to exact ports, in builtin and user
// chains, and check verdicts and counters against the reference on
// packets at every range's edges.

// portRange is a tcp or udp port range rule's ports.
type portRange struct {
	proto  uint16
	sp, dp [2]uint16
	inv    uint8
}

func (r portRange) rule(target string) ipt.RuleSpec {
	x := rule().proto(r.proto, false)
	if r.proto == ipt.ProtoTCP {
		x.m(tcpM(r.sp, r.dp, r.inv))
	} else {
		x.m(udpM(r.sp, r.dp, r.inv))
	}
	return x.j(target)
}

func tr(lo, hi uint16) portRange {
	return portRange{proto: ipt.ProtoTCP, sp: anyPorts(), dp: [2]uint16{lo, hi}}
}

func ur(lo, hi uint16) portRange {
	return portRange{proto: ipt.ProtoUDP, sp: anyPorts(), dp: [2]uint16{lo, hi}}
}

// edgePorts are the ports at and next to the ends of the ranges, and the
// ends of the port space.
func edgePorts(rs []portRange) []uint16 {
	ps := []uint16{0, 1, 2, 65533, 65534, 65535}
	add := func(r [2]uint16) {
		for _, e := range []int{int(r[0]) - 1, int(r[0]), int(r[1]), int(r[1]) + 1} {
			if e >= 0 && e <= 0xFFFF {
				ps = append(ps, uint16(e))
			}
		}
	}
	for _, r := range rs {
		add(r.dp)
		if r.sp != anyPorts() {
			add(r.sp)
		}
	}
	slices.Sort(ps)
	return slices.Compact(ps)
}

// rangePackets: tcp and udp packets to each port (sport fixed), and from
// each port (dport fixed).
func rangePackets(ports []uint16, sport, dport uint16) []*pkt {
	var ps []*pkt
	for _, p := range ports {
		for _, sd := range [][2]uint16{{sport, p}, {p, dport}} {
			base := pkt{src: addr("10.0.0.1"), dst: addr("10.0.0.254"), in: "eth0", out: "eth1"}
			t, u := base, base
			t.proto, t.l4 = ipt.ProtoTCP, tcpHdr(sd[0], sd[1], 0x02)
			u.proto, u.l4 = ipt.ProtoUDP, udpHdr(sd[0], sd[1])
			ps = append(ps, &t, &u)
		}
	}
	return ps
}

// rangeScenario: fixed rules at the edges. Each width class has at least
// minBucket rules in a segment, so that it makes a group.
func rangeScenario(t testing.TB) (*ipt.Table, []portRange) {
	both := func(sp, dp [2]uint16) portRange {
		return portRange{proto: ipt.ProtoTCP, sp: sp, dp: dp}
	}
	inv := func(r portRange, f uint8) portRange { r.inv = f; return r }
	var all []portRange
	list := func(target string, rs ...portRange) []ipt.RuleSpec {
		var out []ipt.RuleSpec
		for _, r := range rs {
			all = append(all, r)
			out = append(out, r.rule(target))
		}
		return out
	}
	var input []ipt.RuleSpec
	// udp: into a user chain of ranges that RETURN, fall through, or
	// decide.
	input = append(input, rule().proto(ipt.ProtoUDP, false).j("u"))
	// Exact ports and ranges of up to 4 ports: one shape.
	input = append(input, list("DROP", tr(0, 0), tr(65535, 65535), tr(1, 3), tr(65532, 65534))...)
	// An exact port before the range holding it, one after.
	input = append(input, list("ACCEPT", tr(1012, 1012))...)
	// Ranges of 5..13 ports, overlapping; at 0 and at 65535.
	input = append(input, list("DROP", tr(1000, 1010), tr(1005, 1009), tr(0, 8), tr(65527, 65535), tr(1008, 1020))...)
	input = append(input, list("ACCEPT", tr(1007, 1007), tr(1009, 1009), tr(1021, 1021), tr(4, 4))...)
	// 14..49 and 50..193 ports, across aligned block boundaries.
	input = append(input, list("ACCEPT", tr(1020, 1040), tr(4090, 4110), tr(16370, 16400), tr(65500, 65535))...)
	input = append(input, list("DROP", tr(1000, 1100), tr(4000, 4200), tr(16300, 16500), tr(0, 150))...)
	// Empty ranges (lo > hi) match no port; inverted ones most.
	input = append(input, list("ACCEPT", tr(100, 90), tr(65535, 0), tr(5000, 4999), tr(7, 6))...)
	input = append(input, list("ACCEPT", inv(tr(2000, 2010), ipt.TCPInvDstPorts), inv(tr(0, 65534), ipt.TCPInvDstPorts))...)
	// Both ports: source and destination ranges.
	input = append(input, list("ACCEPT",
		both([2]uint16{40000, 40010}, [2]uint16{80, 90}), both([2]uint16{40000, 40001}, [2]uint16{443, 444}),
		both([2]uint16{0, 3}, [2]uint16{65534, 65535}), both([2]uint16{40005, 40005}, [2]uint16{20000, 20003}),
		both([2]uint16{40000, 40100}, [2]uint16{22, 22}), inv(both([2]uint16{1, 65535}, [2]uint16{22, 22}), ipt.TCPInvSrcPorts))...)
	// Wide ranges: 194..769 ports, and beyond any key.
	input = append(input, list("ACCEPT", tr(30000, 30500), tr(30400, 31000), tr(60000, 60700), tr(100, 700))...)
	input = append(input, list("DROP", tr(1024, 65535), tr(0, 65535), tr(5, 60000), tr(16382, 65535))...)
	u := list("RETURN", ur(53, 53), ur(0, 0), ur(65535, 65535), ur(67, 68))
	u = append(u, list("", ur(1000, 1010), ur(1005, 1015), ur(65530, 65535), ur(0, 5))...)
	u = append(u, list("ACCEPT", ur(1003, 1003), ur(1000, 1100), ur(0, 20), ur(65500, 65535), ur(20, 10))...)
	u = append(u, list("DROP", ur(1101, 1101), ur(2000, 2003), ur(3000, 3001), ur(65534, 65534))...)
	tb := buildTable(t, map[string]int32{"INPUT": drp, "OUTPUT": acc, "FORWARD": drp},
		chain("u"),
		chain("INPUT", input...),
		chain("u", u...),
		chain("OUTPUT", input[1:]...),
		chain("FORWARD", rule().j("u"), rule().proto(ipt.ProtoTCP, false).m(tcpM(anyPorts(), [2]uint16{1000, 1010}, 0)).j("ACCEPT")),
	)
	return tb, all
}

// rangeGroups: groups with range masks (neither 0 nor exact) and entries
// with more than one key.
func rangeGroups(tb *ipt.Table) (rangeShapes, multiKey int) {
	cl := classify(tb, false)
	for _, g := range cl.groups {
		if m := g.dpmask | g.spmask; m != 0 && (g.dpmask != 0 && g.dpmask != 0xFFFF || g.spmask != 0 && g.spmask != 0xFFFF) {
			rangeShapes++
		}
	}
	for i := range tb.Entries {
		if cl.group[i] >= 0 && len(cl.keys[i]) > 1 {
			multiKey++
		}
	}
	return rangeShapes, multiKey
}

func TestPortRangeScenario(t *testing.T) {
	needBPF(t)
	tb, rs := rangeScenario(t)
	shapes, multi := rangeGroups(tb)
	if shapes < 3 || multi < 20 {
		t.Fatalf("the scenario does not exercise range groups: %d range shapes, %d entries with several keys", shapes, multi)
	}
	ps := rangePackets(edgePorts(rs), 40005, 80)
	ps = append(ps, rangePackets([]uint16{0, 1, 40000, 40010, 65535}, 0, 65535)...)
	differential(t, tb, ps)
}

// rangeWidths are the widths at the ends of portBlocks' classes.
var rangeWidths = []int{1, 2, 4, 5, 13, 14, 49, 50, 193, 194, 769, 3073, 12289, 49153, 49154, 65536}

// randRange draws a range of width at most w (often w) near one of a few
// centers; sometimes empty, sometimes at an end of the port space.
func randRange(r *rand.Rand, w int) [2]uint16 {
	if r.IntN(2) == 0 {
		w = 1 + r.IntN(w)
	}
	var lo int
	switch r.IntN(6) {
	case 0:
		lo = 0
	case 1:
		lo = 65536 - w
	default:
		c := pick(r, []int{80, 1000, 1024, 4096, 16384, 40000})
		lo = c - r.IntN(w+2)
	}
	lo = max(0, min(lo, 65536-w))
	if r.IntN(15) == 0 { // empty
		return [2]uint16{uint16(lo + 1), uint16(lo)}
	}
	return [2]uint16{uint16(lo), uint16(lo + w - 1)}
}

// randRangeTable: builtin and user chains of runs of tcp/udp port range
// rules (each run of one width at most, so that runs make groups), with exact
// ports, inversions and source ranges mixed in.
func randRangeTable(t testing.TB, r *rand.Rand) (*ipt.Table, []portRange) {
	var all []portRange
	users := []string{"r0", "r1"}
	var chains []chainSpec
	for _, u := range users {
		chains = append(chains, chain(u))
	}
	for ci, name := range []string{"INPUT", "FORWARD", "OUTPUT", "r0", "r1"} {
		var rules []ipt.RuleSpec
		for runs := 1 + r.IntN(4); runs > 0; runs-- {
			proto := pick(r, []uint16{ipt.ProtoTCP, ipt.ProtoUDP})
			w := pick(r, rangeWidths)
			for n := 3 + r.IntN(10); n > 0; n-- {
				pr := portRange{proto: proto, sp: anyPorts(), dp: randRange(r, w)}
				switch r.IntN(8) {
				case 0:
					pr.sp, pr.dp = pr.dp, anyPorts()
				case 1:
					pr.sp = randRange(r, pick(r, rangeWidths))
				case 2:
					pr.inv = uint8(1 + r.IntN(3))
				case 3:
					p := pick(r, corpusPorts)
					pr.dp = [2]uint16{p, p}
				}
				if r.IntN(4) == 0 {
					pr.proto = pick(r, []uint16{ipt.ProtoTCP, ipt.ProtoUDP})
				}
				all = append(all, pr)
				target := pick(r, []string{"ACCEPT", "DROP", "DROP", "", "RETURN"})
				if ci < 3 && r.IntN(6) == 0 {
					target = pick(r, users)
				} else if ci == 3 && r.IntN(6) == 0 {
					target = "r1"
				}
				rules = append(rules, pr.rule(target))
			}
		}
		chains = append(chains, chain(name, rules...))
	}
	pol := func() int32 { return pick(r, []int32{acc, drp}) }
	return buildTable(t, map[string]int32{"INPUT": pol(), "FORWARD": pol(), "OUTPUT": pol()}, chains...), all
}

func TestPortRangeRandom(t *testing.T) {
	needBPF(t)
	n := 40
	if testing.Short() || inVM {
		n = 10
	}
	shapes, multi := 0, 0
	for seed := 0; seed < n; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(seed), 11))
			tb, rs := randRangeTable(t, r)
			s, m := rangeGroups(tb)
			shapes, multi = shapes+s, multi+m
			ports := edgePorts(rs)
			r.Shuffle(len(ports), func(i, j int) { ports[i], ports[j] = ports[j], ports[i] })
			ports = ports[:min(len(ports), 60)]
			ps := rangePackets(ports, pick(r, corpusPorts), pick(r, corpusPorts))
			ps = append(ps, corpus(uint64(seed), 40)...)
			differential(t, tb, ps)
		})
	}
	if shapes < n || multi < 5*n {
		t.Errorf("the tables do not exercise range groups: %d range shapes, %d entries with several keys", shapes, multi)
	}
}
