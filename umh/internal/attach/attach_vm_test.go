//go:build vmguest

package attach

import (
	"slices"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/codegen"
	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/vishvananda/netlink"
)

// rule is one iptables rule of a test table.
type rule struct {
	chain   string
	in, out string // -i, -o
	dport   uint16 // -p udp --dport
	verdict int32
}

// compiled is a table, compiled and loaded.
type compiled struct {
	tb   *ipt.Table
	objs *codegen.Objects
}

// table builds, compiles and loads a filter table of policy ACCEPT holding
// rules.
func table(t *testing.T, rules ...rule) *compiled {
	t.Helper()
	b := ipt.NewFilterBuilder()
	for _, r := range rules {
		var s ipt.RuleSpec
		if r.in != "" {
			s.IP.SetInIface(r.in)
		}
		if r.out != "" {
			s.IP.SetOutIface(r.out)
		}
		s.IP.Proto = ipt.ProtoUDP
		s.Matches = append(s.Matches, ipt.NewMatch(&ipt.UDP{SrcPorts: [2]uint16{0, 0xFFFF},
			DstPorts: [2]uint16{r.dport, r.dport}}))
		s.Jump = ipt.VerdictName(r.verdict)
		if err := b.Append(r.chain, s); err != nil {
			t.Fatal(err)
		}
	}
	blob, err := b.Replace(4, 0)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ipt.ParseReplaceHeader(blob)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := ipt.Translate(&h, blob[ipt.ReplaceSize:])
	if err != nil {
		t.Fatal(err)
	}
	spec, err := codegen.Compile(tb, codegen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := spec.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	return &compiled{tb: tb, objs: objs}
}

// counters returns the counters of chain's rule i (-1: its policy).
func (c *compiled) counters(t *testing.T, chain string, i int) ipt.Counters {
	t.Helper()
	var e *ipt.Entry
	for _, ch := range c.tb.Chains {
		if ch.Name == chain {
			if i < 0 {
				e = ch.Policy
			} else {
				e = ch.Rules[i]
			}
		}
	}
	idx := slices.Index(c.tb.Entries, e)
	if idx < 0 {
		t.Fatalf("no entry %s %d", chain, i)
	}
	all, err := c.objs.ReadCounters()
	if err != nil {
		t.Fatal(err)
	}
	return all[idx]
}

func wantCounters(t *testing.T, what string, got ipt.Counters, pkts uint64) {
	t.Helper()
	want := ipt.Counters{Pcnt: pkts, Bcnt: pkts * ipLen}
	if got != want {
		t.Errorf("%s counters: %d packets %d bytes, want %d packets %d bytes",
			what, got.Pcnt, got.Bcnt, want.Pcnt, want.Bcnt)
	} else {
		t.Logf("%s counters: %d packets, %d bytes", what, got.Pcnt, got.Bcnt)
	}
}

const burst = 5

// pair is two namespaces joined by a veth pair: a (10.99.0.1 on va) and
// b (10.99.0.2 on vb).
func pair(t *testing.T) (a, b *testNS) {
	a, b = newNS(t, "a"), newNS(t, "b")
	veth(t, a, "va", "10.99.0.1/24", b, "vb", "10.99.0.2/24")
	return a, b
}

// TestAttachInput: -A INPUT -p udp --dport 23 -j DROP in the receiving
// namespace, with forwarding off (fib lookup answers FWD_DISABLED) and on
// (it answers NOT_FWDED for the local address); then an empty table
// replaces it; then Close leaves nothing of ours and port 23 passes.
func TestAttachInput(t *testing.T) {
	for _, fwd := range []bool{false, true} {
		name := "forwarding-off"
		if fwd {
			name = "forwarding-on"
		}
		t.Run(name, func(t *testing.T) {
			a, b := pair(t)
			b.forwarding(t, fwd)
			l23, l24 := b.listen(t, "10.99.0.2:23"), b.listen(t, "10.99.0.2:24")
			// Resolve ARP before any rule is there.
			if got, _ := exchange(t, a, "10.99.0.2:24", l24, 1, 'w'); got != 1 {
				t.Fatalf("warm-up: %d datagrams arrived, want 1", got)
			}

			drop := table(t, rule{chain: "INPUT", dport: 23, verdict: ipt.VerdictDrop})
			att := b.attacher(t)
			if err := att.Install(drop.objs); err != nil {
				t.Fatal(err)
			}
			links, all := att.Links(), b.links(t)
			slices.Sort(links)
			if !slices.Equal(links, all) || !slices.Contains(all, "lo") {
				t.Errorf("attached to %v, want every link: %v", links, all)
			}
			if f, _ := b.ours(t); len(f) != 2*len(all) {
				t.Errorf("filters: %v, want ingress and egress on each of %v", f, all)
			}
			if got, _ := exchange(t, a, "10.99.0.2:23", l23, burst, 'd'); got != 0 {
				t.Errorf("port 23: %d of %d datagrams arrived through DROP", got, burst)
			}
			if got, _ := exchange(t, a, "10.99.0.2:24", l24, burst, 'p'); got != burst {
				t.Errorf("port 24: %d of %d datagrams arrived", got, burst)
			}
			wantCounters(t, "INPUT rule 1 (--dport 23 DROP)", drop.counters(t, "INPUT", 0), burst)
			wantCounters(t, "INPUT policy", drop.counters(t, "INPUT", -1), burst)
			wantCounters(t, "FORWARD policy", drop.counters(t, "FORWARD", -1), 0)
			wantCounters(t, "OUTPUT policy", drop.counters(t, "OUTPUT", -1), 0)

			empty := table(t)
			if err := att.Install(empty.objs); err != nil {
				t.Fatal(err)
			}
			if got, _ := exchange(t, a, "10.99.0.2:23", l23, burst, 'e'); got != burst {
				t.Errorf("port 23 after the empty table: %d of %d datagrams arrived", got, burst)
			}
			wantCounters(t, "empty table's INPUT policy", empty.counters(t, "INPUT", -1), burst)
			wantCounters(t, "old table's rule after the swap", drop.counters(t, "INPUT", 0), burst)

			// Back to DROP (the generation used first), then Close.
			if err := att.Install(drop.objs); err != nil {
				t.Fatal(err)
			}
			if got, _ := exchange(t, a, "10.99.0.2:23", l23, burst, 'x'); got != 0 {
				t.Errorf("port 23, DROP installed again: %d of %d arrived", got, burst)
			}
			wantCounters(t, "INPUT rule 1 after the second install", drop.counters(t, "INPUT", 0), 2*burst)
			if err := att.Close(); err != nil {
				t.Fatal(err)
			}
			if f, q := b.ours(t); len(f) != 0 || len(q) != 0 {
				t.Errorf("after Close: filters %v, clsact qdiscs %v; want none", f, q)
			}
			if got, _ := exchange(t, a, "10.99.0.2:23", l23, burst, 'c'); got != burst {
				t.Errorf("port 23 after Close: %d of %d datagrams arrived", got, burst)
			}
		})
	}
}

// TestAttachOutput: -A OUTPUT -p udp --dport 25 -j DROP in the sending
// namespace.
func TestAttachOutput(t *testing.T) {
	a, b := pair(t)
	l24, l25 := b.listen(t, "10.99.0.2:24"), b.listen(t, "10.99.0.2:25")
	if got, _ := exchange(t, a, "10.99.0.2:24", l24, 1, 'w'); got != 1 {
		t.Fatalf("warm-up: %d datagrams arrived, want 1", got)
	}
	tb := table(t, rule{chain: "OUTPUT", dport: 25, verdict: ipt.VerdictDrop})
	att := a.attacher(t)
	if err := att.Install(tb.objs); err != nil {
		t.Fatal(err)
	}
	got, werr := exchange(t, a, "10.99.0.2:25", l25, burst, 'd')
	if got != 0 {
		t.Errorf("port 25: %d of %d datagrams arrived through OUTPUT DROP", got, burst)
	}
	t.Logf("port 25: %d of %d writes reported an error", werr, burst)
	if got, _ := exchange(t, a, "10.99.0.2:24", l24, burst, 'p'); got != burst {
		t.Errorf("port 24: %d of %d datagrams arrived", got, burst)
	}
	wantCounters(t, "OUTPUT rule 1 (--dport 25 DROP)", tb.counters(t, "OUTPUT", 0), burst)
	wantCounters(t, "OUTPUT policy", tb.counters(t, "OUTPUT", -1), burst)
	wantCounters(t, "INPUT policy", tb.counters(t, "INPUT", -1), 0)
	if err := att.Close(); err != nil {
		t.Fatal(err)
	}
	if f, q := a.ours(t); len(f) != 0 || len(q) != 0 {
		t.Errorf("after Close: filters %v, clsact qdiscs %v; want none", f, q)
	}
	if got, _ := exchange(t, a, "10.99.0.2:25", l25, burst, 'c'); got != burst {
		t.Errorf("port 25 after Close: %d of %d datagrams arrived", got, burst)
	}
}

// TestAttachForward: a router r between a (10.99.1.1) and b (10.99.2.1)
// with -A INPUT -p udp --dport 27 -j DROP and
// -A FORWARD -i ra -o rb -p udp --dport 26 -j DROP. Forwarded port 26 is
// dropped, forwarded port 27 passes (INPUT does not see forwarded packets),
// port 27 to r's own address is dropped by INPUT.
func TestAttachForward(t *testing.T) {
	a, r, b := newNS(t, "a"), newNS(t, "r"), newNS(t, "b")
	veth(t, a, "va", "10.99.1.1/24", r, "ra", "10.99.1.254/24")
	veth(t, r, "rb", "10.99.2.254/24", b, "vb", "10.99.2.1/24")
	a.route(t, "va", "10.99.1.254")
	b.route(t, "vb", "10.99.2.254")
	r.forwarding(t, true)
	l26, l27 := b.listen(t, "10.99.2.1:26"), b.listen(t, "10.99.2.1:27")
	r27 := r.listen(t, "10.99.1.254:27")
	if got, _ := exchange(t, a, "10.99.2.1:27", l27, 1, 'w'); got != 1 {
		t.Fatalf("warm-up through r: %d datagrams arrived, want 1", got)
	}
	if got, _ := exchange(t, a, "10.99.1.254:27", r27, 1, 'w'); got != 1 {
		t.Fatalf("warm-up to r: %d datagrams arrived, want 1", got)
	}

	tb := table(t,
		rule{chain: "INPUT", dport: 27, verdict: ipt.VerdictDrop},
		rule{chain: "FORWARD", in: "ra", out: "rb", dport: 26, verdict: ipt.VerdictDrop})
	att := r.attacher(t)
	if err := att.Install(tb.objs); err != nil {
		t.Fatal(err)
	}
	if got, _ := exchange(t, a, "10.99.2.1:26", l26, burst, 'd'); got != 0 {
		t.Errorf("forwarded port 26: %d of %d datagrams arrived through FORWARD DROP", got, burst)
	}
	if got, _ := exchange(t, a, "10.99.2.1:27", l27, burst, 'p'); got != burst {
		t.Errorf("forwarded port 27: %d of %d datagrams arrived", got, burst)
	}
	if got, _ := exchange(t, a, "10.99.1.254:27", r27, burst, 'i'); got != 0 {
		t.Errorf("port 27 to r: %d of %d datagrams arrived through INPUT DROP", got, burst)
	}
	wantCounters(t, "FORWARD rule 1 (-i ra -o rb --dport 26 DROP)", tb.counters(t, "FORWARD", 0), burst)
	wantCounters(t, "FORWARD policy", tb.counters(t, "FORWARD", -1), burst)
	wantCounters(t, "INPUT rule 1 (--dport 27 DROP)", tb.counters(t, "INPUT", 0), burst)
	wantCounters(t, "INPUT policy", tb.counters(t, "INPUT", -1), 0)
	wantCounters(t, "OUTPUT policy", tb.counters(t, "OUTPUT", -1), 0)
}

// TestAttachKeepsForeignQdisc: a clsact qdisc that was there before stays
// after Close; the one the Attacher made goes.
func TestAttachKeepsForeignQdisc(t *testing.T) {
	_, b := pair(t)
	lo, err := b.nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.nl.QdiscAdd(clsact(lo)); err != nil {
		t.Fatal(err)
	}
	att := b.attacher(t)
	if err := att.Install(table(t).objs); err != nil {
		t.Fatal(err)
	}
	if _, q := b.ours(t); !slices.Equal(q, b.links(t)) {
		t.Errorf("clsact qdiscs while attached: %v, want one on each of %v", q, b.links(t))
	}
	if err := att.Close(); err != nil {
		t.Fatal(err)
	}
	f, q := b.ours(t)
	if len(f) != 0 || !slices.Equal(q, []string{"lo"}) {
		t.Errorf("after Close: filters %v, clsact qdiscs %v; want none and [lo]", f, q)
	}
}

// TestAttachSync: interfaces made after Install are attached by Sync, and
// forgotten when they go.
func TestAttachSync(t *testing.T) {
	_, b := pair(t)
	att := b.attacher(t)
	if err := att.Install(table(t).objs); err != nil {
		t.Fatal(err)
	}
	before := b.links(t)
	if err := b.nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "x1"}, PeerName: "x2"}); err != nil {
		t.Fatal(err)
	}
	if err := att.Sync(); err != nil {
		t.Fatal(err)
	}
	links := att.Links()
	slices.Sort(links)
	if !slices.Equal(links, b.links(t)) || !slices.Contains(links, "x1") || !slices.Contains(links, "x2") {
		t.Errorf("after Sync attached to %v, want %v", links, b.links(t))
	}
	if f, _ := b.ours(t); len(f) != 2*len(links) {
		t.Errorf("filters after Sync: %v", f)
	}
	x1, err := b.nl.LinkByName("x1")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.nl.LinkDel(x1); err != nil {
		t.Fatal(err)
	}
	if err := att.Sync(); err != nil {
		t.Fatal(err)
	}
	links = att.Links()
	slices.Sort(links)
	if !slices.Equal(links, before) {
		t.Errorf("after the veth went: attached to %v, want %v", links, before)
	}
	if err := att.Close(); err != nil {
		t.Fatal(err)
	}
	if f, q := b.ours(t); len(f) != 0 || len(q) != 0 {
		t.Errorf("after Close: filters %v, clsact qdiscs %v; want none", f, q)
	}
}
