package datapath

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

var (
	randPrefixes = []string{"10.0.0.1/32", "10.0.0.0/24", "10.0.0.0/8", "192.168.1.0/24", "172.16.0.9/32",
		"8.8.8.8/32", "10.0.0.254/32", "0.0.0.0/0", "10.9.0.0/16"}
	randIfaces = []string{"eth0", "eth+", "wlan0", "veth+", "lo", "eth1", "+"}
)

func randPorts(r *rand.Rand) [2]uint16 {
	switch r.IntN(3) {
	case 0:
		return anyPorts()
	case 1:
		p := pick(r, corpusPorts)
		return [2]uint16{p, p}
	}
	a, b := pick(r, corpusPorts), pick(r, corpusPorts)
	if a > b {
		a, b = b, a
	}
	return [2]uint16{a, b}
}

func randMultiport(r *rand.Rand) *ipt.Multiport {
	var ps [][2]uint16
	for n := 1 + r.IntN(5); n > 0; n-- {
		ps = append(ps, randPorts(r))
	}
	return multiport(uint8(r.IntN(3)), r.IntN(4) == 0, ps...)
}

// randRule draws a rule from the corpus' values, so that it often matches.
// targets are the chains it may jump to.
func randRule(r *rand.Rand, targets []string, builtin bool) ipt.RuleSpec {
	x := rule()
	if r.IntN(3) == 0 {
		x.src(pick(r, randPrefixes), r.IntN(5) == 0)
	}
	if r.IntN(4) == 0 {
		x.dst(pick(r, randPrefixes), r.IntN(5) == 0)
	}
	if r.IntN(6) == 0 {
		x.in(pick(r, randIfaces), r.IntN(4) == 0)
	}
	if r.IntN(6) == 0 {
		x.out(pick(r, randIfaces), r.IntN(4) == 0)
	}
	if r.IntN(12) == 0 {
		x.frag(r.IntN(2) == 0)
	}
	if r.IntN(2) == 0 {
		p := pick(r, []uint16{ipt.ProtoTCP, ipt.ProtoUDP, ipt.ProtoICMP, ipt.ProtoSCTP, 47})
		inv := r.IntN(6) == 0
		x.proto(p, inv)
		for n := r.IntN(3); n > 0 && !inv; n-- {
			switch {
			case p == ipt.ProtoTCP && r.IntN(3) > 0:
				m := tcpM(randPorts(r), randPorts(r), uint8(r.IntN(8)))
				if r.IntN(3) == 0 {
					m.FlagMask, m.FlagCmp = pick(r, []uint8{0x17, 0x12, 0x3F, 0x02}), pick(r, corpusFlags)
				}
				if r.IntN(4) == 0 {
					m.Option = pick(r, []uint8{1, 2, 3, 4, 5, 8, 19, 30, 6, 0xFF})
				}
				x.m(m)
			case p == ipt.ProtoUDP && r.IntN(3) > 0:
				x.m(udpM(randPorts(r), randPorts(r), uint8(r.IntN(4))))
			case p == ipt.ProtoICMP:
				c := pick(r, corpusICMP)
				lo, hi := c[1], c[1]
				if r.IntN(2) == 0 {
					lo, hi = 0, 0xFF
				}
				if r.IntN(5) == 0 {
					c[0] = 0xFF
				}
				x.m(&ipt.ICMP{Type: c[0], Code: [2]uint8{lo, hi}, InvFlags: uint8(r.IntN(4) / 3)})
			case p != 47:
				x.m(randMultiport(r))
			}
		}
	}
	if r.IntN(6) == 0 {
		lo, hi := addr(pick(r, corpusSrc)), addr(pick(r, corpusDst))
		if hi.Less(lo) {
			lo, hi = hi, lo
		}
		x.m(&ipt.IPRange{Flags: uint8(r.IntN(64)) & 0x33,
			SrcMin: ipt.Inet4(lo), SrcMax: ipt.Inet4(hi), DstMin: ipt.Inet4(lo), DstMax: ipt.Inet4(hi)})
	}
	if r.IntN(10) == 0 {
		x.m(&ipt.Comment{Text: "c"})
	}
	if r.IntN(8) == 0 {
		x.m(randCTMatch(r))
	}
	if r.IntN(10) == 0 {
		x.m(kmatch(byte(1 << r.IntN(8))))
	}
	if r.IntN(25) == 0 {
		return x.klog()
	}
	switch k := r.IntN(20); {
	case k < 5:
		return x.j("ACCEPT")
	case k < 10:
		return x.j("DROP")
	case k < 12:
		return x.j("RETURN")
	case k < 14:
		return x.j("")
	case k < 15:
		switch r.IntN(3) {
		case 0:
			return x.j("QUEUE")
		case 1:
			return x.nfq(ipt.NFQ{Revision: uint8(r.IntN(4)), QueueNum: uint16(r.IntN(3)), QueuesTotal: 1})
		}
		return x.nfq(ipt.NFQ{Revision: 3, QueueNum: uint16(r.IntN(70000)), QueuesTotal: 1, Flags: uint16(r.IntN(4))})
	case len(targets) > 0 && k < 18:
		return x.j(pick(r, targets))
	case len(targets) > 0:
		return x.g(pick(r, targets))
	}
	return x.j("ACCEPT")
}

// randTable is a filter table with random policies, up to 5 user chains
// (a chain jumps only to later ones: no loops), random rules, and runs of
// rules of one shape (which the classifier groups).
func randTable(t testing.TB, r *rand.Rand) *ipt.Table {
	users := make([]string, r.IntN(6))
	for i := range users {
		users[i] = fmt.Sprintf("u%d", i)
	}
	pol := func() int32 { return pick(r, []int32{acc, drp}) }
	policies := map[string]int32{"INPUT": pol(), "FORWARD": pol(), "OUTPUT": pol()}
	var chains []chainSpec
	for _, u := range users {
		chains = append(chains, chain(u))
	}
	for ci, name := range append([]string{"INPUT", "FORWARD", "OUTPUT"}, users...) {
		targets := users
		if ci >= 3 {
			targets = users[ci-3+1:]
		}
		var rules []ipt.RuleSpec
		for n := r.IntN(12); n > 0; n-- {
			rules = append(rules, randRule(r, targets, ci < 3))
			if r.IntN(6) == 0 {
				rules = append(rules, shapeRun(r, targets)...)
			}
		}
		chains = append(chains, chain(name, rules...))
	}
	return buildTable(t, policies, chains...)
}

// shapeRun is 4..20 rules of one random shape with random values.
func shapeRun(r *rand.Rand, targets []string) []ipt.RuleSpec {
	bits := pick(r, []int{32, 24, 16})
	useDst, proto := r.IntN(2) == 0, pick(r, []uint16{0, ipt.ProtoTCP, ipt.ProtoUDP})
	port := proto != 0 && r.IntN(2) == 0
	var rs []ipt.RuleSpec
	for n := 4 + r.IntN(17); n > 0; n-- {
		x := rule()
		a := pick(r, append(slices.Clone(corpusSrc), corpusDst...))
		p := prefix(fmt.Sprintf("%s/%d", a, bits)).Masked().String()
		if useDst {
			x.dst(p, false)
		} else {
			x.src(p, false)
		}
		if proto != 0 {
			x.proto(proto, false)
			if port {
				pp := pick(r, corpusPorts)
				if proto == ipt.ProtoTCP {
					x.m(tcpM(randPorts(r), [2]uint16{pp, pp}, 0))
				} else {
					x.m(udpM(anyPorts(), [2]uint16{pp, pp}, 0))
				}
			}
		}
		if r.IntN(8) == 0 {
			x.in(pick(r, randIfaces), false)
		}
		switch k := r.IntN(10); {
		case k < 3:
			rs = append(rs, x.j("ACCEPT"))
		case k < 6:
			rs = append(rs, x.j("DROP"))
		case k < 7:
			rs = append(rs, x.j(""))
		case k < 8:
			rs = append(rs, x.j("RETURN"))
		case len(targets) > 0:
			rs = append(rs, x.j(pick(r, targets)))
		default:
			rs = append(rs, x.j("ACCEPT"))
		}
	}
	return rs
}

func TestRandomTables(t *testing.T) {
	needBPF(t)
	n := 60
	if testing.Short() || inVM {
		n = 15
	}
	packets := append(corpus(2, 250), specials()...)
	cr := rand.New(rand.NewPCG(3, 3))
	for _, p := range packets {
		p.ct = randCT(cr, p)
	}
	for seed := 0; seed < n; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(seed), 7))
			differential(t, randTable(t, r), packets)
		})
	}
}
