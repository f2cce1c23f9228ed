package datapath

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// rawMatch is a match built from its data, as iptables would lay it out.
type rawMatch struct {
	name string
	rev  uint8
	data []byte
}

func (m rawMatch) ExtName() string    { return m.name }
func (m rawMatch) ExtRevision() uint8 { return m.rev }
func (m rawMatch) Marshal() []byte    { return m.data }

// kmatch is a kernel-hosted match (mark, struct xt_mark_mtinfo1) whose
// first data byte fakeExt tests against the source address.
func kmatch(b byte) ipt.MatchInfo {
	d := make([]byte, 12)
	d[0] = b
	return rawMatch{"mark", 1, d}
}

// klog is -j LOG: a kernel-hosted target that continues.
func (x *rb) klog() ipt.RuleSpec {
	raw := make([]byte, ipt.EntryTargetSize+32)
	raw[0] = byte(len(raw))
	copy(raw[2:], "LOG")
	x.r.Target = &ipt.Target{Name: "LOG", Raw: raw, Kind: ipt.TargetKernel}
	return x.r
}

func ctMatch(rev uint8, flags, inv uint16, state uint16) *ipt.Conntrack {
	return &ipt.Conntrack{Revision: rev, MatchFlags: flags, InvertFlags: inv, StateMask: state}
}

// randCT is a random conntrack view of p.
func randCT(r *rand.Rand, p *pkt) *ctInfo {
	if r.IntN(6) == 0 {
		return nil
	}
	ct := &ctInfo{info: uint32(r.IntN(6))}
	if r.IntN(5) == 0 {
		ct.info = pick(r, []uint32{7, 8}) // untracked, or no entry
		return ct
	}
	ct.present = 1
	ct.status = pick(r, []uint32{0, 1 << 4, 1 << 5, 0x30, 0x8})
	ct.dir = ct.info / 3
	ct.proto = uint32(p.proto)
	ct.expires = uint32(r.IntN(200))
	s, d := p.src.As4(), p.dst.As4()
	le := func(b [4]byte) uint32 { return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24 }
	ct.addr = [4]uint32{le(s), le(d), le(d), le(s)}
	ct.port = [4]uint16{uint16(r.IntN(3)) << 8, 80 << 8, 80 << 8, uint16(r.IntN(3)) << 8}
	return ct
}

func randCTMatch(r *rand.Rand) ipt.MatchInfo {
	if r.IntN(3) == 0 {
		return &ipt.State{StateMask: uint32(r.IntN(128))}
	}
	c := ctMatch(uint8(1+r.IntN(3)), uint16(r.IntN(1<<13)), uint16(r.IntN(1<<13)), uint16(r.IntN(1<<9)))
	c.StatusMask = pick(r, []uint16{0, 0x10, 0x20, 0x8})
	c.L4Proto = pick(r, []uint16{6, 17, 1})
	c.ExpiresMin, c.ExpiresMax = uint32(r.IntN(100)), uint32(50+r.IntN(150))
	src := ipt.Inet4(addr(pick(r, corpusSrc)))
	c.OrigSrc, c.ReplDst = src, src
	c.OrigSrcMask = ipt.Inet4(addr(pick(r, []string{"255.255.255.255", "255.255.0.0", "0.0.0.0"})))
	c.ReplDstMask = c.OrigSrcMask
	c.OrigSrcPort, c.OrigDstPort, c.ReplSrcPort, c.ReplDstPort = uint16(r.IntN(3)), 80, 80, uint16(r.IntN(3))
	c.OrigSrcPortHigh, c.OrigDstPortHigh, c.ReplSrcPortHigh, c.ReplDstPortHigh = 1, 80, 90, 2
	return c
}

// extScenarios: kernel extensions and conntrack, alone and among keyed
// rules, and risky packets (could hotdrop) among groups keyed by ports.
var extScenarios = []struct {
	name     string
	policies map[string]int32
	chains   []chainSpec
}{
	{name: "callouts", policies: map[string]int32{"INPUT": drp}, chains: []chainSpec{
		chain("k"),
		chain("INPUT",
			rule().src("10.0.0.0/8", false).m(kmatch(1)).j("ACCEPT"),
			rule().proto(ipt.ProtoTCP, false).m(kmatch(2)).m(dport(22)).j("DROP"),
			rule().klog(),
			rule().proto(ipt.ProtoUDP, false).m(kmatch(4)).m(kmatch(8)).j("k"),
			rule().proto(ipt.ProtoTCP, false).m(dport(80)).m(kmatch(16)).j("ACCEPT"),
		),
		chain("k", rule().m(kmatch(32)).klog(), rule().m(kmatch(64)).j("RETURN"), rule().j("DROP")),
		chain("OUTPUT", rule().klog(), rule().m(kmatch(3)).j("DROP")),
	}},
	{name: "callouts among groups", chains: []chainSpec{
		chain("INPUT", append(append(sameShape(10, "ACCEPT"),
			// keyed by the source only: the kernel match comes first
			rule().src("10.0.0.1/32", false).proto(ipt.ProtoTCP, false).m(kmatch(1)).m(dport(80)).j("DROP"),
			rule().src("10.0.0.2/32", false).proto(ipt.ProtoTCP, false).m(kmatch(2)).m(dport(80)).j("DROP"),
			rule().src("10.0.0.3/32", false).proto(ipt.ProtoTCP, false).m(kmatch(3)).m(dport(443)).j("DROP"),
			rule().src("10.0.0.4/32", false).proto(ipt.ProtoTCP, false).m(kmatch(4)).m(dport(80)).j("DROP"),
			rule().src("10.0.0.1/32", false).proto(ipt.ProtoTCP, false).m(kmatch(1)).m(dport(22)).klog()),
			sameShape(6, "DROP")...)...),
	}},
	{name: "conntrack", policies: map[string]int32{"INPUT": drp, "FORWARD": drp}, chains: []chainSpec{
		chain("INPUT",
			rule().m(&ipt.State{StateMask: ipt.CTStateEstablished | ipt.CTStateRelated}).j("ACCEPT"),
			rule().m(ctMatch(1, ipt.CTMatchState, 0, ipt.CTStateInvalid)).j("DROP"),
			rule().m(ctMatch(2, ipt.CTMatchState, ipt.CTMatchState, ipt.CTStateNew)).j("DROP"),
			rule().m(ctMatch(3, ipt.CTMatchState|ipt.CTMatchDirection, 0, ipt.CTStateUntracked|ipt.CTStateNew)).j("ACCEPT"),
			rule().m(&ipt.State{StateMask: ipt.StateUntracked}).j("ACCEPT"),
			rule().m(ctMatch(2, ipt.CTMatchStatus|ipt.CTMatchProto, ipt.CTMatchProto, 0)).j("ACCEPT"),
		),
		chain("FORWARD", rule().m(ctMatch(2, ipt.CTMatchState, 0, ipt.CTStateDNAT|ipt.CTStateSNAT)).j("ACCEPT")),
	}},
	{name: "risky packets among port groups", chains: []chainSpec{
		chain("INPUT", append(append(
			// -s 10.0.0.1 -p tcp --dport N: a short tcp header from
			// 10.0.0.1 hotdrops at the first of them, whatever its port.
			func() (rs []ipt.RuleSpec) {
				for i := 0; i < 12; i++ {
					rs = append(rs, rule().src("10.0.0.1/32", false).proto(ipt.ProtoTCP, false).m(dport(uint16(1000+i))).j("DROP"))
				}
				for i := 0; i < 6; i++ {
					rs = append(rs, rule().src(fmt.Sprintf("10.0.0.%d/32", 2+i), false).proto(ipt.ProtoUDP, false).m(udpM(anyPorts(), [2]uint16{uint16(53 + i), uint16(53 + i)}, 0)).j("DROP"))
				}
				return rs
			}(),
			rule().src("10.0.0.0/24", false).j("ACCEPT")),
			sameShape(5, "DROP")...)...),
	}},
}

func TestExtScenarios(t *testing.T) {
	needBPF(t)
	r := rand.New(rand.NewPCG(5, 5))
	packets := append(corpus(4, 300), specials()...)
	for _, p := range packets {
		p.ct = randCT(r, p)
	}
	for _, s := range extScenarios {
		t.Run(s.name, func(t *testing.T) {
			tb := buildTable(t, s.policies, s.chains...)
			differential(t, tb, packets)
		})
	}
}

// TestSpecExts: the kernel extensions in index order, and Conntrack.
func TestSpecExts(t *testing.T) {
	for _, c := range []struct {
		scenario string
		exts     []int // match index, -1 for the target
		ct       bool
	}{
		{"callouts", []int{0, 0, -1, 0, 1, 1, -1, 0, 0, -1, 0}, false},
		{"conntrack", nil, true},
	} {
		for _, s := range extScenarios {
			if s.name != c.scenario {
				continue
			}
			spec, err := Compile(buildTable(t, s.policies, s.chains...), Options{})
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, x := range spec.Exts {
				got = append(got, x.Match)
				if (x.Match < 0) != x.Ext.Target {
					t.Errorf("%s: %+v", c.scenario, x)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.exts) || spec.Conntrack != c.ct {
				t.Errorf("%s: exts %v conntrack %v, want %v %v", c.scenario, got, spec.Conntrack, c.exts, c.ct)
			}
		}
	}
}

// TestHotdropCost: a packet that a match hotdrops costs about the same
// whatever the number of rules (no walk of every rule): the last of
// 10,000 rules hotdrops lastPacket cut short.
func TestHotdropCost(t *testing.T) {
	needBPF(t)
	short := lastPacket()
	short.l4 = short.l4[:12]
	frame := short.frame()
	cost := func(n int) time.Duration {
		prog := load(t, matchLast(t, n, 1), Options{}).objs.Program(ipt.HookLocalIn)
		var ds []time.Duration
		for i := 0; i < 5; i++ {
			ret, d, err := prog.Benchmark(frame, 2000, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ret != NFDrop {
				t.Fatalf("%d rules: verdict %s, want DROP (hotdrop)", n, verdictName(ret))
			}
			ds = append(ds, d)
		}
		return median(ds)
	}
	one, many := cost(1), cost(10000)
	t.Logf("hotdrop: 1 rule %v, 10000 rules %v", one, many)
	if many > 5*one+200*time.Nanosecond {
		t.Errorf("hotdrop at 10000 rules costs %v, at 1 rule %v: a walk that grows with the rules", many, one)
	}
}

// TestConntrackPorts: conntrack's ports (--ctorigdstport) in each
// revision, ahead of a kernel match, as TestRandomTables' seed 23 came
// down to: ipt.Conntrack holds port numbers, which revisions 1 and 2
// compare with the tuple's network-order port, revision 3 in host order.
// An entry whose port compare is wrong lets the search go on to the
// kernel match of the next one, which ip_tables never runs.
func TestConntrackPorts(t *testing.T) {
	needBPF(t)
	be16 := func(p uint16) uint16 { return p>>8 | p<<8 } // a __be16 read as a u16
	for rev := uint8(1); rev <= 3; rev++ {
		ct := ctMatch(rev, ipt.CTMatchOrigDstPrt, 0, 0)
		ct.OrigDstPort, ct.OrigDstPortHigh = 80, 80
		tb := buildTable(t, map[string]int32{"INPUT": drp}, chain("INPUT",
			rule().m(ct).j("ACCEPT"),
			rule().m(kmatch(0xFF)).j("DROP"),
		))
		for _, linear := range []bool{false, true} {
			l := load(t, tb, Options{Linear: linear})
			for _, c := range []struct {
				dport   uint16 // the tuple's original destination port
				verdict uint32
				trace   []int
			}{
				{80, NFAccept, nil},
				{81, NFDrop, []int{1}},
				{be16(80), NFDrop, []int{1}}, // 20480: 80's bytes swapped
			} {
				p := lastPacket()
				p.ct = &ctInfo{present: 1, proto: uint32(ipt.ProtoTCP), port: [4]uint16{be16(40000), be16(c.dport), be16(80), be16(40000)}}
				v := hookView(Input(), *p)
				var got, want []int
				exp := refEvalTrace(tb, ipt.HookLocalIn, &v, make([]ipt.Counters, len(tb.Entries)), &want)
				if exp != c.verdict || !slices.Equal(want, c.trace) {
					t.Fatalf("revision %d, port %d: reference %s, callouts %v; want %s, %v", rev, c.dport, verdictName(exp), want, verdictName(c.verdict), c.trace)
				}
				if ret := l.runTrace(t, Input(), &v, &got); ret != c.verdict || !slices.Equal(got, c.trace) {
					t.Errorf("revision %d, linear=%v, port %d: %s, callouts %v; want %s, callouts %v", rev, linear, c.dport,
						verdictName(ret), got, verdictName(c.verdict), c.trace)
				}
			}
		}
	}
}

// TestLoadHoldsNoMapping: after Close, the process maps no BPF map (a
// loaded ebpf.Variable would mmap .rodata, and the mapping would keep the
// map in the kernel until the garbage collector unmapped it).
func TestLoadHoldsNoMapping(t *testing.T) {
	needBPF(t)
	tb := buildTable(t, nil, chain("INPUT", rule().j("DROP")), chain("FORWARD", rule().m(dport(80)).proto(ipt.ProtoTCP, false).j("ACCEPT")))
	spec, err := Compile(tb, Options{})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := spec.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	objs.Close()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "bpf-map") {
			t.Errorf("a BPF map is still mapped after Close: %s", l)
		}
	}
}
