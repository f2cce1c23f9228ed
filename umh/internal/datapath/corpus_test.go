package datapath

import (
	"math/rand/v2"
	"net/netip"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// Values that both the packet corpus and the rule generators draw from,
// so that rules match packets often.
var (
	corpusSrc   = []string{"10.0.0.1", "10.0.0.2", "10.0.7.3", "10.1.2.3", "192.168.1.5", "172.16.0.9"}
	corpusDst   = []string{"10.0.0.1", "10.0.0.254", "192.168.1.1", "8.8.8.8"}
	corpusPorts = []uint16{22, 53, 80, 443, 1000, 1500, 8080, 40000, 0, 65535}
	corpusIfs   = []string{"eth0", "eth1", "wlan0", "veth1234", "lo", ""}
	corpusFlags = []uint8{0x02, 0x10, 0x12, 0x11, 0x04, 0x3F}
	corpusICMP  = [][2]uint8{{8, 0}, {0, 0}, {3, 3}, {3, 1}, {11, 0}, {255, 7}}
	// Option lists: MSS, SACK permitted, timestamps, window scale, EOL,
	// kinds hidden inside another option's data, a zero length, and a
	// length running past the end.
	corpusTCPOpts = [][]byte{
		{2, 4, 5, 0xB4},
		{2, 4, 5, 0xB4, 4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 3, 3, 7},
		{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0},
		{3, 3, 7},
		{0, 2, 4, 5},
		{30, 6, 2, 4, 8, 8, 4, 2},
		{5, 0, 2, 4, 1, 1, 1, 1},
		{19, 18, 2, 4},
		{8, 40},
	}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

// randPacket is a random packet of the corpus: mostly well-formed
// tcp/udp/icmp/sctp, some other protocols, fragments (first, at offset 1,
// later), truncated transport headers, IP options and link padding.
func randPacket(r *rand.Rand) *pkt {
	p := &pkt{src: addr(pick(r, corpusSrc)), dst: addr(pick(r, corpusDst)),
		in: pick(r, corpusIfs), out: pick(r, corpusIfs)}
	switch k := r.IntN(10); {
	case k < 4:
		p.proto = ipt.ProtoTCP
		p.l4 = tcpHdr(pick(r, corpusPorts), pick(r, corpusPorts), pick(r, corpusFlags))
		switch r.IntN(5) {
		case 0, 1:
			p.l4 = tcpOpts(pick(r, corpusPorts), pick(r, corpusPorts), pick(r, corpusFlags), pick(r, corpusTCPOpts), 0)
		case 2:
			if r.IntN(3) == 0 { // a data offset below 5, or beyond the packet
				p.l4 = tcpOpts(pick(r, corpusPorts), pick(r, corpusPorts), pick(r, corpusFlags), nil, pick(r, []uint8{0, 3, 4, 15}))
			}
		}
	case k < 6:
		p.proto = ipt.ProtoUDP
		p.l4 = udpHdr(pick(r, corpusPorts), pick(r, corpusPorts))
	case k < 8:
		p.proto = ipt.ProtoICMP
		c := pick(r, corpusICMP)
		p.l4 = icmpHdr(c[0], c[1])
	case k < 9:
		p.proto = ipt.ProtoSCTP
		p.l4 = udpHdr(pick(r, corpusPorts), pick(r, corpusPorts))[:4]
		p.l4 = append(p.l4, make([]byte, 8)...)
	default:
		p.proto = 47
		p.l4 = make([]byte, 8)
	}
	if r.IntN(8) == 0 {
		// The hosts of sameShape's rules.
		i := r.IntN(40)
		p.src = netip.AddrFrom4([4]byte{10, 9, 0, byte(i)})
		p.proto = ipt.ProtoTCP
		p.l4 = tcpHdr(pick(r, corpusPorts), uint16(2000+i-r.IntN(2)), pick(r, corpusFlags))
	}
	if r.IntN(4) == 0 {
		p.l4 = append(p.l4, make([]byte, r.IntN(40))...) // payload
	}
	switch r.IntN(14) {
	case 0: // later fragment
		p.fragOff = uint16(1 + r.IntN(3)*50)
		p.mf = r.IntN(2) == 0
	case 1: // fragment at offset 1
		p.fragOff = 1
	case 2: // first fragment
		p.mf = true
	case 3: // truncated transport header
		p.l4 = p.l4[:r.IntN(len(p.l4))]
	}
	if r.IntN(8) == 0 {
		p.ipOpts = 4 * (1 + r.IntN(3))
	}
	if r.IntN(5) == 0 {
		p.pad = 1 + r.IntN(30)
	}
	return p
}

func corpus(seed uint64, n int) []*pkt {
	r := rand.New(rand.NewPCG(seed, 1))
	ps := make([]*pkt, n)
	for i := range ps {
		ps[i] = randPacket(r)
	}
	return ps
}

func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// specials are the corner cases, each once for a few ports: tcp headers
// with a bad data offset or cut options, fragments at offset 1 and later,
// first fragments, transport headers cut short.
func specials() []*pkt {
	var ps []*pkt
	for _, dp := range []uint16{22, 80, 443} {
		base := pkt{src: addr("10.0.0.1"), dst: addr("10.0.0.254"), proto: ipt.ProtoTCP, in: "eth0", out: "eth1"}
		add := func(f func(p *pkt)) {
			p := base
			f(&p)
			ps = append(ps, &p)
		}
		add(func(p *pkt) { p.l4 = tcpOpts(1000, dp, 0x02, nil, 3) })
		add(func(p *pkt) { p.l4 = tcpOpts(1000, dp, 0x02, nil, 15) })
		add(func(p *pkt) { p.l4 = tcpOpts(1000, dp, 0x12, corpusTCPOpts[1], 0) })
		add(func(p *pkt) { p.l4 = tcpOpts(1000, dp, 0x10, corpusTCPOpts[2], 0) })
		add(func(p *pkt) { p.l4 = tcpHdr(1000, dp, 0x02)[:8]; p.fragOff = 1 })
		add(func(p *pkt) { p.l4 = tcpHdr(1000, dp, 0x02)[:8]; p.fragOff = 2 })
		add(func(p *pkt) { p.l4 = tcpHdr(1000, dp, 0x02); p.mf = true })
		add(func(p *pkt) { p.l4 = tcpHdr(1000, dp, 0x02)[:12] })
		add(func(p *pkt) { p.proto, p.l4 = ipt.ProtoUDP, udpHdr(53, dp)[:6] })
		add(func(p *pkt) { p.proto, p.l4 = ipt.ProtoUDP, udpHdr(53, dp); p.fragOff = 1 })
		add(func(p *pkt) { p.proto, p.l4 = ipt.ProtoICMP, icmpHdr(8, 0)[:4] })
		add(func(p *pkt) { p.proto, p.l4 = ipt.ProtoSCTP, udpHdr(53, dp)[:3] })
	}
	return ps
}
