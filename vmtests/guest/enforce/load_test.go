//go:build vmguest

package enforce

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

var backends = []gt.Backend{gt.IPTables, gt.Bpfilter}

// filler is the i-th rule of a family of rules that never match the test
// traffic (UDP from 10.9x.0.1 to ports 23 and 24 of 10.9x.0.2 over
// interfaces not named nomatch*), in several shapes; chain is the chain
// it goes to and variant picks another mix of shapes.
func filler(chain string, i, variant int) string {
	x, y, port := (i/250)%250, i%250, 1000+i%50000
	switch (i + variant) % 5 {
	case 0:
		return fmt.Sprintf("-A %s -s 172.20.%d.%d/32 -p udp --dport %d -j DROP", chain, x, y, port)
	case 1:
		return fmt.Sprintf("-A %s -d 172.21.%d.%d/32 -p tcp --dport %d -j ACCEPT", chain, x, y, port)
	case 2:
		return fmt.Sprintf("-A %s -i nomatch%d -p udp --dport 23 -j ACCEPT", chain, i)
	case 3:
		return fmt.Sprintf("-A %s -p udp -m multiport --dports %d,%d -j DROP", chain, port, port+1)
	default:
		return fmt.Sprintf("-A %s -s 172.22.%d.0/24 -d 172.23.%d.0/24 -j DROP", chain, x, y)
	}
}

const tableHead = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"

// directRuleset drops port 23 in INPUT itself, between fillers in front
// and behind (n in all), with policy ACCEPT.
func directRuleset(n int) string {
	var b strings.Builder
	b.WriteString(tableHead)
	for i := 0; i < n/2; i++ {
		fmt.Fprintln(&b, filler("INPUT", i, 0))
	}
	fmt.Fprintln(&b, dropPort23)
	for i := n / 2; i < n; i++ {
		fmt.Fprintln(&b, filler("INPUT", i, 0))
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// chainRuleset has policy DROP in INPUT, which sends UDP to a user chain
// of n fillers that drops port 23 and goes to a chain that accepts port 24.
func chainRuleset(n int) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:udpchk - [0:0]\n:pass - [0:0]\n")
	b.WriteString("-A INPUT -p udp -j udpchk\n")
	for i := 0; i < n; i++ {
		fmt.Fprintln(&b, filler("udpchk", i, 2))
	}
	b.WriteString("-A udpchk -p udp --dport 23 -j DROP\n-A udpchk -p udp --dport 24 -g pass\n-A pass -j ACCEPT\nCOMMIT\n")
	return b.String()
}

// TestReplaceUnderLoad: a steady stream of UDP to port 23 (dropped by
// both rulesets) and 24 (accepted by both) while the table is replaced
// 40 times, alternating a ruleset that drops 23 in INPUT among 500
// fillers with one that does it in a user chain of 300 fillers, under
// policy DROP. Not one datagram to 23 may arrive, every one to 24 must.
func TestReplaceUnderLoad(t *testing.T) {
	const replacements = 40
	rulesets := []string{directRuleset(500), chainRuleset(300)}
	for _, be := range backends {
		t.Run(be.String(), func(t *testing.T) {
			use(t, be)
			a, b := newNS(t, "a"), newNS(t, "b")
			veth(t, a, "ab0", "10.97.0.1/24", b, "ba0", "10.97.0.2/24")
			b.restore(t, rulesets[0])
			l23, l24 := b.listen(t, "10.97.0.2:23"), b.listen(t, "10.97.0.2:24")
			s23, s24 := a.dial(t, "10.97.0.2:23"), a.dial(t, "10.97.0.2:24")
			expectProbe(t, "before the stream", burst, []int{0, burst}, path{s23, l23}, path{s24, l24})

			// The stream: one datagram to each port every 2 ms.
			tag := newTag()
			var sent atomic.Uint64
			var stop atomic.Bool
			var sendErr error
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq := uint64(0); !stop.Load(); seq++ {
					if err := s23.send(tag, seq); err != nil {
						sendErr = err
						return
					}
					if err := s24.send(tag, seq); err != nil {
						sendErr = err
						return
					}
					sent.Store(seq + 1)
					time.Sleep(2 * time.Millisecond)
				}
			}()
			stopStream := func() { stop.Store(true); wg.Wait() }
			defer stopStream()

			time.Sleep(100 * time.Millisecond) // the stream runs before the first replacement
			start := time.Now()
			during := 0 // replacements during which datagrams were sent
			for i := 0; i < replacements; i++ {
				before := sent.Load()
				b.restore(t, rulesets[(i+1)%2])
				if sent.Load() > before {
					during++
				}
			}
			took := time.Since(start)
			time.Sleep(100 * time.Millisecond)
			stopStream()
			if sendErr != nil {
				t.Fatalf("the stream: %v", sendErr)
			}
			n := int(sent.Load())
			l24.waitCount(tag, n, 5*time.Second)
			time.Sleep(grace)
			got23, got24 := l23.count(tag), l24.count(tag)
			t.Logf("%d replacements in %v (%v each); %d datagrams to each port, %d replacements saw datagrams sent during them; arrived: port 23 %d, port 24 %d",
				replacements, took.Round(time.Millisecond), (took / replacements).Round(time.Millisecond), n, during, got23, got24)
			if got23 != 0 {
				t.Errorf("%d of %d datagrams to port 23, which every ruleset drops, arrived", got23, n)
			}
			if got24 != n {
				t.Errorf("%d of %d datagrams to port 24, which every ruleset accepts, arrived", got24, n)
			}
			if during < replacements*9/10 {
				t.Errorf("the stream was not steady: only %d of %d replacements saw datagrams sent during them", during, replacements)
			}
			// The last ruleset is in force and complete.
			s := b.ipt(t, "-S")
			if rules := strings.Count(s, "\n-A "); rules != 500+1 {
				t.Errorf("after the replacements: %d rules, want %d", rules, 501)
			}
			expectProbe(t, "after the stream", burst, []int{0, burst}, path{s23, l23}, path{s24, l24})
			gt.Ensure(t, be)
		})
	}
}

// TestNewInterface: the rules are in force before an interface of their
// name exists, and before the namespace at its other end does: in b,
// INPUT drops UDP to port 23 and accepts 24 from vethnew+, OUTPUT drops
// UDP to port 25 through vethnew+. Then a namespace c and a veth pair
// vethnew0 (in b) and vnpeer0 (in c) are made, and the very first
// datagrams over it are judged: 23 and 25 dropped, 24 and 26 pass, and the
// rules' counters count exactly those datagrams, as ip_tables' do. Over
// the older interface old1, where the rules do not apply, 23 passes.
func TestNewInterface(t *testing.T) {
	listings := map[gt.Backend]string{}
	for _, be := range backends {
		t.Run(be.String(), func(t *testing.T) {
			use(t, be)
			a, b := newNS(t, "a"), newNS(t, "b")
			veth(t, a, "old0", "10.95.0.1/24", b, "old1", "10.95.0.2/24")
			b.restore(t, tableHead+
				"-A INPUT -i vethnew+ -p udp --dport 23 -j DROP\n"+
				"-A INPUT -i vethnew+ -p udp --dport 24 -j ACCEPT\n"+
				"-A OUTPUT -o vethnew+ -p udp --dport 25 -j DROP\n"+
				"-A OUTPUT -o vethnew+ -p udp --dport 26 -j ACCEPT\nCOMMIT\n")
			l23, l24 := b.listen(t, ":23"), b.listen(t, ":24")
			o23, o24 := path{a.dial(t, "10.95.0.2:23"), l23}, path{a.dial(t, "10.95.0.2:24"), l24}
			expectProbe(t, "over old1", burst, []int{burst, burst}, o23, o24)

			c := newNS(t, "c")
			l25, l26 := c.listen(t, ":25"), c.listen(t, ":26") // no address yet
			veth(t, c, "vnpeer0", "10.96.0.1/24", b, "vethnew0", "10.96.0.2/24")
			// The first datagrams over vethnew0, each way.
			n23, n24 := path{c.dial(t, "10.96.0.2:23"), l23}, path{c.dial(t, "10.96.0.2:24"), l24}
			n25, n26 := path{b.dial(t, "10.96.0.1:25"), l25}, path{b.dial(t, "10.96.0.1:26"), l26}
			expectProbe(t, "the first datagrams from c over vethnew0", burst, []int{0, burst}, n23, n24)
			// An OUTPUT drop fails the send with EPERM, as with ip_tables.
			tag25, eperm := newTag(), 0
			for i := 0; i < burst; i++ {
				if err := n25.s.send(tag25, uint64(i)); errors.Is(err, syscall.EPERM) {
					eperm++
				} else if err != nil {
					t.Fatalf("send to port 25: %v", err)
				}
			}
			expectProbe(t, "the first datagrams from b over vethnew0", burst, []int{burst}, n26)
			if got := n25.l.count(tag25); got != 0 || eperm != burst {
				t.Errorf("the first datagrams from b to port 25 over vethnew0: %d of %d arrived, %d sends failed with EPERM; want none and all",
					got, burst, eperm)
			}
			if ours, others := l23.all(); ours != burst || others != 0 {
				t.Errorf("port 23 in b: %d datagrams of ours arrived (want %d, over old1), %d others", ours, burst, others)
			}

			out := b.ipt(t, "-L", "-v", "-x", "-n")
			lst := parseListing(t, out)
			wantCounter(t, "-i vethnew+ --dport 23 DROP", lst.rule(t, "INPUT", 0), burst)
			wantCounter(t, "-i vethnew+ --dport 24 ACCEPT", lst.rule(t, "INPUT", 1), burst)
			wantCounter(t, "INPUT policy (old1)", lst.policy["INPUT"], 2*burst)
			wantCounter(t, "-o vethnew+ --dport 25 DROP", lst.rule(t, "OUTPUT", 0), burst)
			wantCounter(t, "-o vethnew+ --dport 26 ACCEPT", lst.rule(t, "OUTPUT", 1), burst)
			listings[be] = out
			gt.Ensure(t, be)
		})
	}
	if ipt, bpf := listings[gt.IPTables], listings[gt.Bpfilter]; ipt == "" || bpf == "" {
		t.Fatal("a backend's run did not finish")
	} else if ipt != bpf {
		t.Errorf("iptables-legacy -L -v -x -n differs, bpfilter against ip_tables: %s\nbpfilter:\n%s\nip_tables:\n%s", firstDiff(bpf, ipt), bpf, ipt)
	}
}

// scaleInput is 10,000 rules in INPUT, the one that drops port 23 last.
func scaleInput() string {
	const n = 10000
	var b strings.Builder
	b.WriteString(tableHead)
	for i := 0; i < n-1; i++ {
		fmt.Fprintln(&b, filler("INPUT", i, 0))
	}
	fmt.Fprintln(&b, dropPort23)
	b.WriteString("COMMIT\n")
	return b.String()
}

// scaleChains is 10,000 rules over 100 user chains: INPUT jumps to each
// chain in turn (100 rules), each chain holds 99 fillers, except that the
// last one's last rule drops port 23. A datagram to 23 meets every rule.
func scaleChains() string {
	const chains, per = 100, 99
	var b strings.Builder
	b.WriteString(tableHead)
	for c := 0; c < chains; c++ {
		fmt.Fprintf(&b, ":c%02d - [0:0]\n", c)
	}
	for c := 0; c < chains; c++ {
		fmt.Fprintf(&b, "-A INPUT -p udp -j c%02d\n", c)
	}
	for c := 0; c < chains; c++ {
		name := fmt.Sprintf("c%02d", c)
		for i := 0; i < per; i++ {
			if c == chains-1 && i == per-1 {
				fmt.Fprintf(&b, "-A %s -p udp --dport 23 -j DROP\n", name)
				continue
			}
			fmt.Fprintln(&b, filler(name, c*per+i, 1))
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// TestScale: each of the two 10,000-rule tables restores, drops port 23
// by its last rule (whose counters count the datagrams) and passes port
// 24; iptables-legacy -L -v -x -n prints the same with bpfilter as with
// ip_tables.
func TestScale(t *testing.T) {
	tables := []struct {
		name, input, chain string
	}{
		{"INPUT", scaleInput(), "INPUT"},
		{"100 chains", scaleChains(), "c99"},
	}
	listings := map[gt.Backend][]string{}
	for _, be := range backends {
		t.Run(be.String(), func(t *testing.T) {
			use(t, be)
			a, b := newNS(t, "a"), newNS(t, "b")
			veth(t, a, "ab0", "10.98.0.1/24", b, "ba0", "10.98.0.2/24")
			l23, l24 := b.listen(t, "10.98.0.2:23"), b.listen(t, "10.98.0.2:24")
			p23, p24 := path{a.dial(t, "10.98.0.2:23"), l23}, path{a.dial(t, "10.98.0.2:24"), l24}
			for _, tb := range tables {
				start := time.Now()
				b.restore(t, tb.input)
				took := time.Since(start)
				expectProbe(t, tb.name, burst, []int{0, burst}, p23, p24)
				out := b.ipt(t, "-L", "-v", "-x", "-n")
				lst := parseListing(t, out)
				rules := 0
				for _, rs := range lst.rules {
					rules += len(rs)
				}
				if rules != 10000 {
					t.Errorf("%s: %d rules listed, want 10000", tb.name, rules)
				}
				last := lst.rule(t, tb.chain, -1)
				wantCounter(t, tb.name+": the last rule", last, burst)
				t.Logf("%s: restore of %d rules took %v; last rule counters %v", tb.name, rules, took.Round(time.Millisecond), last)
				listings[be] = append(listings[be], out)
			}
			gt.Ensure(t, be)
		})
	}
	ipt, bpf := listings[gt.IPTables], listings[gt.Bpfilter]
	if len(ipt) != len(tables) || len(bpf) != len(tables) {
		t.Fatal("a backend's run did not finish")
	}
	for i, tb := range tables {
		if ipt[i] != bpf[i] {
			t.Errorf("%s: iptables-legacy -L -v -x -n differs, bpfilter against ip_tables: %s", tb.name, firstDiff(bpf[i], ipt[i]))
		}
	}
}
