package datapath

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// The packet that the last rule of the big tables matches.
func lastPacket() *pkt {
	return &pkt{src: addr("10.0.0.1"), dst: addr("10.0.0.2"), proto: ipt.ProtoTCP, l4: tcpHdr(40000, 80, 0x10)}
}

// filler is the i-th rule that the last packet does not match, in one of
// shapes shapes: "-s 11.x.y.z -p tcp --dport N", and for mixed tables also
// "-d 12.x.y.0/24", "-p udp --dport N", "-s 13.x.y.z -i ethN" and a port
// range (which no key holds).
func filler(i, shapes int, target string) ipt.RuleSpec {
	a := netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}).String()
	switch i % shapes {
	case 1:
		return rule().dst(fmt.Sprintf("12.%d.%d.0/24", byte(i>>8), byte(i)), false).j(target)
	case 2:
		return rule().proto(ipt.ProtoUDP, false).m(udpM(anyPorts(), [2]uint16{uint16(i), uint16(i)}, 0)).j(target)
	case 3:
		return rule().src(a+"/32", false).in(fmt.Sprintf("eth%d", i%7), false).j(target)
	case 4:
		p := uint16(1000 + i%5000)
		return rule().proto(ipt.ProtoTCP, false).m(tcpM(anyPorts(), [2]uint16{p, p + 10}, 0)).j(target)
	}
	return rule().src(a+"/32", false).proto(ipt.ProtoTCP, false).m(dport(uint16(1000 + i%1000))).j(target)
}

// matchLast is n rules in INPUT (policy DROP), of which only the last
// matches lastPacket (ACCEPT).
func matchLast(t testing.TB, n, shapes int) *ipt.Table {
	rules := make([]ipt.RuleSpec, 0, n)
	for i := 0; i < n-1; i++ {
		rules = append(rules, filler(i, shapes, "DROP"))
	}
	rules = append(rules, rule().src("10.0.0.1/32", false).proto(ipt.ProtoTCP, false).m(dport(80)).j("ACCEPT"))
	return buildTable(t, map[string]int32{"INPUT": drp}, chain("INPUT", rules...))
}

// matchLastChains is n rules spread over c user chains that INPUT jumps to
// by source /16; the last rule of the last chain matches lastPacket.
func matchLastChains(t testing.TB, n, c int) *ipt.Table {
	var chains []chainSpec
	var jumps []ipt.RuleSpec
	per := n / c
	for k := 0; k < c; k++ {
		name := fmt.Sprintf("c%03d", k)
		chains = append(chains, chain(name))
		src := fmt.Sprintf("11.%d.0.0/16", k)
		if k == c-1 {
			src = "10.0.0.0/16"
		}
		jumps = append(jumps, rule().src(src, false).j(name))
	}
	for k := 0; k < c; k++ {
		var rules []ipt.RuleSpec
		for i := 0; i < per; i++ {
			rules = append(rules, filler(k*per+i, 1, "DROP"))
		}
		if k == c-1 {
			rules[per-1] = rule().src("10.0.0.1/32", false).proto(ipt.ProtoTCP, false).m(dport(80)).j("ACCEPT")
		}
		chains = append(chains, chain(fmt.Sprintf("c%03d", k), rules...))
	}
	chains = append(chains, chain("INPUT", jumps...))
	return buildTable(t, map[string]int32{"INPUT": drp}, chains...)
}

// TestScale loads the big tables and checks them against the reference on
// the corpus and on the packet the last rule matches.
func TestScale(t *testing.T) {
	needBPF(t)
	packets := append(corpus(3, 100), lastPacket())
	for _, c := range []struct {
		name string
		tb   func(t testing.TB) *ipt.Table
	}{
		{"10000 rules", func(t testing.TB) *ipt.Table { return matchLast(t, 10000, 1) }},
		{"10000 rules 5 shapes", func(t testing.TB) *ipt.Table { return matchLast(t, 10000, 5) }},
		{"10000 rules in 100 chains", func(t testing.TB) *ipt.Table { return matchLastChains(t, 10000, 100) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			tb := c.tb(t)
			built := time.Since(start)
			differential(t, tb, packets)
			t.Logf("table built in %v; compiled, loaded twice and checked in %v", built, time.Since(start)-built)
			l := load(t, tb, Options{})
			if got := l.run(t, Input(), lastPacket()); got != NFAccept {
				t.Errorf("the last rule's packet: %s", verdictName(got))
			}
		})
	}
}
