//go:build vmguest

package traffic

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestNAT: ip_tables' nat table translates while ip_tables or bpfilter
// owns filter. DNAT in PREROUTING happens before INPUT, which sees the
// new destination; MASQUERADE in POSTROUTING happens after FORWARD, which
// sees the client's own source.
func TestNAT(t *testing.T) {
	r := setupRouted(t)
	vip := netip.MustParseAddr("10.9.0.100") // off every link, routed to the DUT: DNAT makes it the DUT's
	nat := `
-A PREROUTING -d 10.9.0.100 -p udp --dport 8000 -j DNAT --to-destination 10.6.0.1:8001
-A POSTROUTING -o rt-s0 -j MASQUERADE`
	flows := []flow{
		{name: "dnat 10.9.0.100:8000 -> 10.6.0.1:8001", from: r.client, to: r.dut, dst: ap(vip, 8000), at: ap(rtDUT, 8001)},
		r.fwd("masquerade to 10.7.0.2:8100", 8100),
	}
	const dn, mq = "dnat 10.9.0.100:8000 -> 10.6.0.1:8001", "masquerade to 10.7.0.2:8100"
	differential(t, []string{"iptable_nat", "xt_nat", "xt_MASQUERADE"}, []dcase{
		{name: "input sees the new destination, forward the old source",
			nat: nat,
			rules: `
-A INPUT -d 10.9.0.100 -j DROP
-A INPUT -p udp --dport 8000 -j DROP
-A INPUT -d 10.6.0.1 -p udp --dport 8001
-A FORWARD -s 10.7.0.1 -j DROP
-A FORWARD -s 10.6.0.0/24 -d 10.7.0.2`,
			flows: flows,
			want:  map[string]string{dn: "2/2 arrived from 10.6.0.2", mq: "2/2 arrived from 10.7.0.1"},
			counters: map[string]string{"INPUT 1": "0 0", "INPUT 2": "0 0", "INPUT 3": count(2, 64),
				"FORWARD 1": "0 0", "FORWARD 2": count(2, 64)}},
		{name: "the new destination dropped",
			nat:      nat,
			rules:    `-A INPUT -d 10.6.0.1 -p udp --dport 8001 -j DROP`,
			flows:    flows,
			want:     map[string]string{dn: "0/2 arrived", mq: "2/2 arrived from 10.7.0.1"},
			counters: map[string]string{"INPUT 1": count(2, 64)}},
		{name: "forward policy drop, the client net accepted",
			nat:      nat,
			policy:   map[string]string{"FORWARD": "DROP"},
			rules:    `-A FORWARD -s 10.6.0.0/24 -j ACCEPT`,
			flows:    flows,
			want:     map[string]string{mq: "2/2 arrived from 10.7.0.1"},
			counters: map[string]string{"FORWARD 1": count(2, 64), "FORWARD policy": "0 0"}},
		{name: "the old source dropped",
			nat:      nat,
			rules:    `-A FORWARD -s 10.6.0.2 -p udp --dport 8100 -j DROP`,
			flows:    flows,
			want:     map[string]string{mq: "0/2 arrived", dn: "2/2 arrived"},
			counters: map[string]string{"FORWARD 1": count(2, 64)}},
	})
}

// TestFragments: UDP datagrams of 3,028 bytes (IP total length) over
// links of MTU 1500: the client's to the DUT (INPUT) and through it
// (FORWARD) leave the client in 3 fragments, the DUT's own (OUTPUT) are
// fragmented after OUTPUT. INPUT always sees the datagram reassembled
// (ip_local_deliver defragments before the hook); OUTPUT sees it whole;
// FORWARD sees each fragment, unless conntrack's defragmentation runs at
// PREROUTING, which an unrelated DNAT rule turns on in the namespace.
// Both situations run under both backends with the same modules loaded.
func TestFragments(t *testing.T) {
	r := setupRouted(t)
	const big = 3000 // payload: 3,008 bytes of UDP, fragments of 1,480 + 1,480 + 48
	flows := []flow{
		r.in("in 8200", rtDUT, 8200), r.in("in 8201 dropped", rtDUT, 8201),
		r.fwd("fwd 8210", 8210), r.fwd("fwd 8211 dropped", 8211),
		r.out("out 8220", 8220), r.out("out 8221 dropped", 8221),
	}
	for i := range flows {
		flows[i].payload = big
	}
	rules := `
-A INPUT -f
-A INPUT -p udp --dport 8201 -j DROP
-A INPUT -p udp --dport 8200
-A FORWARD -f
-A FORWARD -p udp --dport 8211 -j DROP
-A FORWARD -p udp --dport 8210
-A OUTPUT -f
-A OUTPUT -p udp --dport 8221 -j DROP
-A OUTPUT -p udp --dport 8220`
	want := map[string]string{
		"in 8200": "2/2 arrived", "in 8201 dropped": "0/2 arrived",
		"fwd 8210": "2/2 arrived", "fwd 8211 dropped": "0/2 arrived",
		"out 8220": "2/2 arrived", "out 8221 dropped": "0/2 arrived, 2 sends failed: EPERM",
	}
	// Without defragmentation FORWARD meets 4 datagrams' second and third
	// fragments (1,500 + 68 bytes), and the first ones (1,500 bytes).
	differential(t, []string{"iptable_nat", "xt_nat"}, []dcase{
		{name: "without conntrack", rules: rules, flows: flows, want: want,
			counters: map[string]string{
				"INPUT 1": "0 0", "INPUT 2": count(2, big), "INPUT 3": count(2, big),
				"FORWARD 1": "8 6272", "FORWARD 2": "2 3000", "FORWARD 3": "2 3000",
				"OUTPUT 1": "0 0", "OUTPUT 2": count(2, big), "OUTPUT 3": count(2, big)}},
		{name: "with conntrack", rules: rules, flows: flows, want: want,
			nat: `-A PREROUTING -d 192.0.2.99 -j DNAT --to-destination 192.0.2.98`,
			counters: map[string]string{
				"INPUT 1": "0 0", "INPUT 2": count(2, big), "INPUT 3": count(2, big),
				"FORWARD 1": "0 0", "FORWARD 2": count(2, big), "FORWARD 3": count(2, big),
				"OUTPUT 1": "0 0", "OUTPUT 2": count(2, big), "OUTPUT 3": count(2, big)}},
	})
}

// TestFwmark: the mangle table marks the client's datagrams to 10.9.0.200
// an address of no host, and a routing rule sends marked packets to a
// table where 10.9.0.200 is local: the DUT delivers them, and INPUT (not
// FORWARD) judges them.
func TestFwmark(t *testing.T) {
	r := setupRouted(t)
	mark := netip.MustParseAddr("10.9.0.200")
	rule := netlink.NewRule()
	rule.Mark, rule.Table, rule.Priority, rule.Family = 0x42, 142, 100, unix.AF_INET
	if err := r.dut.NL.RuleAdd(rule); err != nil {
		t.Fatalf("ip rule fwmark 0x42 lookup 142: %v", err)
	}
	t.Cleanup(func() { _ = r.dut.NL.RuleDel(rule) })
	lo := r.dut.Link(t, "lo")
	route := &netlink.Route{Dst: &net.IPNet{IP: mark.AsSlice(), Mask: net.CIDRMask(32, 32)}, Table: 142,
		Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST, LinkIndex: lo.Attrs().Index}
	if err := r.dut.NL.RouteAdd(route); err != nil {
		t.Fatalf("ip route add local 10.9.0.200 dev lo table 142: %v", err)
	}
	t.Cleanup(func() { _ = r.dut.NL.RouteDel(route) })

	any := netip.IPv4Unspecified()
	flows := []flow{
		{name: "marked 8300", from: r.client, to: r.dut, dst: ap(mark, 8300), at: ap(any, 8300)},
		{name: "marked 8301", from: r.client, to: r.dut, dst: ap(mark, 8301), at: ap(any, 8301)},
	}
	mangle := `-A PREROUTING -d 10.9.0.200 -j MARK --set-xmark 0x42/0xffffffff`
	differential(t, []string{"iptable_mangle", "xt_mark"}, []dcase{
		{name: "input judges what the mark delivers",
			mangle: mangle,
			rules: `
-A INPUT -d 10.9.0.200 -p udp --dport 8301 -j DROP
-A INPUT -d 10.9.0.200
-A FORWARD -d 10.9.0.200 -j DROP`,
			flows:    flows,
			want:     map[string]string{"marked 8300": "2/2 arrived", "marked 8301": "0/2 arrived"},
			counters: map[string]string{"INPUT 1": count(2, 64), "INPUT 2": count(2, 64), "FORWARD 1": "0 0"}},
		{name: "input policy drop, one port accepted",
			mangle:   mangle,
			policy:   map[string]string{"INPUT": "DROP"},
			rules:    `-A INPUT -d 10.9.0.200 -p udp --dport 8300 -j ACCEPT`,
			flows:    flows,
			want:     map[string]string{"marked 8300": "2/2 arrived", "marked 8301": "0/2 arrived"},
			counters: map[string]string{"INPUT 1": count(2, 64), "INPUT policy": count(2, 64)}},
	})
}
