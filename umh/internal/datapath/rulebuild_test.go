package datapath

import (
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// rb builds a rule the way iptables' command line does.
type rb struct{ r ipt.RuleSpec }

func rule() *rb { return &rb{} }

func (x *rb) inv(on bool, flag uint8) *rb {
	if on {
		x.r.IP.InvFlags |= flag
	}
	return x
}

func (x *rb) src(p string, inv bool) *rb {
	x.r.IP.SetSrc(prefix(p))
	return x.inv(inv, ipt.InvSrcIP)
}

func (x *rb) dst(p string, inv bool) *rb {
	x.r.IP.SetDst(prefix(p))
	return x.inv(inv, ipt.InvDstIP)
}

// srcMask sets a (possibly non-contiguous) mask: iptables accepts
// "-s 10.0.0.0/255.0.255.0".
func (x *rb) srcMask(a, m string, inv bool) *rb {
	x.r.IP.Src = addr(a).As4()
	x.r.IP.SrcMask = addr(m).As4()
	for i := range x.r.IP.Src {
		x.r.IP.Src[i] &= x.r.IP.SrcMask[i]
	}
	return x.inv(inv, ipt.InvSrcIP)
}

func (x *rb) in(name string, inv bool) *rb {
	x.r.IP.SetInIface(name)
	return x.inv(inv, ipt.InvViaIn)
}

func (x *rb) out(name string, inv bool) *rb {
	x.r.IP.SetOutIface(name)
	return x.inv(inv, ipt.InvViaOut)
}

func (x *rb) proto(p uint16, inv bool) *rb {
	x.r.IP.Proto = p
	return x.inv(inv, ipt.InvProto)
}

// frag is -f (inv: ! -f, which iptables stores as both flags).
func (x *rb) frag(inv bool) *rb {
	x.r.IP.Flags |= ipt.FlagFrag
	return x.inv(inv, ipt.InvFrag)
}

func (x *rb) m(info ipt.MatchInfo) *rb {
	x.r.Matches = append(x.r.Matches, ipt.NewMatch(info))
	return x
}

func (x *rb) j(target string) ipt.RuleSpec {
	x.r.Jump = target
	return x.r
}

// nfq is -j NFQUEUE with q's revision, queue and flags.
func (x *rb) nfq(q ipt.NFQ) ipt.RuleSpec {
	tg := q.Target()
	x.r.Target = &tg
	return x.r
}

func (x *rb) g(chain string) ipt.RuleSpec {
	x.r.Jump, x.r.Goto = chain, true
	return x.r
}

func anyPorts() [2]uint16 { return [2]uint16{0, 0xFFFF} }

func tcpM(sp, dp [2]uint16, inv uint8) *ipt.TCP {
	return &ipt.TCP{SrcPorts: sp, DstPorts: dp, InvFlags: inv}
}

func dport(p uint16) *ipt.TCP { return tcpM(anyPorts(), [2]uint16{p, p}, 0) }

func udpM(sp, dp [2]uint16, inv uint8) *ipt.UDP {
	return &ipt.UDP{SrcPorts: sp, DstPorts: dp, InvFlags: inv}
}

func multiport(flags uint8, invert bool, ports ...[2]uint16) *ipt.Multiport {
	m := &ipt.Multiport{Flags: flags}
	for _, p := range ports {
		if p[0] == p[1] {
			m.Ports[m.Count] = p[0]
			m.Count++
			continue
		}
		m.Ports[m.Count], m.PFlags[m.Count] = p[0], 1
		m.Ports[m.Count+1] = p[1]
		m.Count += 2
	}
	if invert {
		m.Invert = 1
	}
	return m
}

func iprange(flags uint8, smin, smax, dmin, dmax string) *ipt.IPRange {
	r := &ipt.IPRange{Flags: flags}
	set := func(u *[16]byte, s string) {
		if s != "" {
			*u = ipt.Inet4(addr(s))
		}
	}
	set(&r.SrcMin, smin)
	set(&r.SrcMax, smax)
	set(&r.DstMin, dmin)
	set(&r.DstMax, dmax)
	return r
}

// chainSpec is a chain and its rules, for buildTable.
type chainSpec struct {
	name  string
	rules []ipt.RuleSpec
}

// buildTable builds a filter table: policies of builtin chains, then the
// chains (user chains are created) and their rules.
func buildTable(t testing.TB, policies map[string]int32, chains ...chainSpec) *ipt.Table {
	t.Helper()
	b := ipt.NewBuilder("filter", ipt.FilterValidHooks)
	made := map[string]bool{"INPUT": true, "FORWARD": true, "OUTPUT": true}
	for _, c := range chains {
		if !made[c.name] {
			made[c.name] = true
			if err := b.NewChain(c.name); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, v := range policies {
		if err := b.SetPolicy(name, v, ipt.Counters{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range chains {
		for _, r := range c.rules {
			if err := b.Append(c.name, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	return table(t, b)
}
