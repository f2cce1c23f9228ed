//go:build vmguest

package traffic

import (
	"net/netip"
	"testing"

	nt "github.com/bpfilter/bpfilter/vmtests/guest/nettest"
)

// TestBridge: a bridge br0 of the DUT (10.5.0.1/24) with two veth ports,
// brp1 and brp2, whose peers are hosts h1 (10.5.0.2) and h2 (10.5.0.3).
// Without br_netfilter, ip_tables meets packets at the IP layer only:
// INPUT and OUTPUT see br0 and never a port's name, and frames bridged
// from h1 to h2 meet no chain at all (FORWARD counts nothing).
func TestBridge(t *testing.T) {
	dut, h1, h2 := nt.DUTHost(t), nt.NewHost(t, "h1"), nt.NewHost(t, "h2")
	dut.Bridge(t, "br0")
	nt.Pair(t, dut, "brp1", h1, "b1")
	nt.Pair(t, dut, "brp2", h2, "b2")
	dut.Enslave(t, "brp1", "br0")
	dut.Enslave(t, "brp2", "br0")
	dut.Addr(t, "br0", "10.5.0.1/24")
	h1.Addr(t, "b1", "10.5.0.2/24")
	h2.Addr(t, "b2", "10.5.0.3/24")
	nt.Sysctl(t, "ipv4/conf/br0/rp_filter", "0")
	br, a1, a2 := netip.MustParseAddr("10.5.0.1"), netip.MustParseAddr("10.5.0.2"), netip.MustParseAddr("10.5.0.3")

	flows := []flow{
		{name: "h1->br0:7001", from: h1, to: dut, dst: ap(br, 7001)},
		{name: "h1->br0:7002", from: h1, to: dut, dst: ap(br, 7002)},
		{name: "DUT->h1:7010", from: dut, to: h1, dst: ap(a1, 7010)},
		{name: "h1->h2:7020 bridged", from: h1, to: h2, dst: ap(a2, 7020)},
		{name: "h2->h1:7021 bridged", from: h2, to: h1, dst: ap(a1, 7021)},
	}
	all2 := func(names ...string) map[string]string {
		m := map[string]string{}
		for _, n := range names {
			m[n] = "2/2 arrived"
		}
		return m
	}
	differential(t, []string{"bridge"}, []dcase{
		{name: "port names never match, br0 does",
			policy: map[string]string{"FORWARD": "DROP"},
			rules: `
-A INPUT -i brp1 -j DROP
-A INPUT -i br0 -p udp --dport 7002 -j DROP
-A INPUT -i br0
-A FORWARD -j DROP
-A OUTPUT -o brp1 -j DROP
-A OUTPUT -o br0`,
			flows: flows,
			want: map[string]string{"h1->br0:7001": "2/2 arrived", "h1->br0:7002": "0/2 arrived",
				"DUT->h1:7010": "2/2 arrived", "h1->h2:7020 bridged": "2/2 arrived", "h2->h1:7021 bridged": "2/2 arrived"},
			counters: map[string]string{"INPUT 1": "0 0", "INPUT 2": count(2, 64), "INPUT 3": count(2, 64),
				"FORWARD policy": "0 0", "FORWARD 1": "0 0", "OUTPUT 1": "0 0", "OUTPUT 2": count(2, 64)}},
		{name: "input policy drop, br0 accepted",
			policy:   map[string]string{"INPUT": "DROP", "FORWARD": "DROP"},
			rules:    `-A INPUT -i br0 -j ACCEPT`,
			flows:    flows,
			want:     all2("h1->br0:7001", "h1->br0:7002", "h1->h2:7020 bridged"),
			counters: map[string]string{"INPUT 1": count(4, 64), "INPUT policy": "0 0", "FORWARD policy": "0 0"}},
		{name: "input policy drop, a port accepted",
			policy: map[string]string{"INPUT": "DROP"},
			rules:  `-A INPUT -i brp+ -j ACCEPT`,
			flows:  flows,
			want: map[string]string{"h1->br0:7001": "0/2 arrived", "h1->br0:7002": "0/2 arrived",
				"h1->h2:7020 bridged": "2/2 arrived"},
			counters: map[string]string{"INPUT 1": "0 0", "INPUT policy": count(4, 64)}},
		{name: "output to br0 dropped",
			rules: `
-A OUTPUT -o brp1 -j ACCEPT
-A OUTPUT -o br0 -p udp --dport 7010 -j DROP`,
			flows:    flows,
			want:     map[string]string{"DUT->h1:7010": "0/2 arrived, 2 sends failed: EPERM", "h1->h2:7020 bridged": "2/2 arrived"},
			counters: map[string]string{"OUTPUT 1": "0 0", "OUTPUT 2": count(2, 64)}},
	})
}

// TestVLAN: an 802.1Q device vl0.10 (10.8.0.1/24) on the DUT's veth vl0,
// whose peer hv0 in host hv carries hv0.10 (10.8.0.2/24). ip_tables sees
// the VLAN device: -i vl0.10 matches, the parent's name never does.
func TestVLAN(t *testing.T) {
	dut, hv := nt.DUTHost(t), nt.NewHost(t, "hv")
	nt.Pair(t, dut, "vl0", hv, "hv0")
	dut.VLAN(t, "vl0", "vl0.10", 10)
	hv.VLAN(t, "hv0", "hv0.10", 10)
	dut.Addr(t, "vl0.10", "10.8.0.1/24")
	hv.Addr(t, "hv0.10", "10.8.0.2/24")
	nt.Sysctl(t, "ipv4/conf/vl0.10/rp_filter", "0")
	d, h := netip.MustParseAddr("10.8.0.1"), netip.MustParseAddr("10.8.0.2")
	flows := []flow{
		{name: "hv->vlan:7101", from: hv, to: dut, dst: ap(d, 7101)},
		{name: "hv->vlan:7102", from: hv, to: dut, dst: ap(d, 7102)},
		{name: "DUT->hv:7110", from: dut, to: hv, dst: ap(h, 7110)},
	}
	differential(t, []string{"8021q"}, []dcase{
		{name: "parent never matches, vlan device does",
			rules: `
-A INPUT -i vl0 -j DROP
-A INPUT -i vl0.10 -p udp --dport 7102 -j DROP
-A INPUT -i vl0.10
-A OUTPUT -o vl0 -j DROP
-A OUTPUT -o vl0.10`,
			flows: flows,
			want:  map[string]string{"hv->vlan:7101": "2/2 arrived", "hv->vlan:7102": "0/2 arrived", "DUT->hv:7110": "2/2 arrived"},
			counters: map[string]string{"INPUT 1": "0 0", "INPUT 2": count(2, 64), "INPUT 3": count(2, 64),
				"OUTPUT 1": "0 0", "OUTPUT 2": count(2, 64)}},
		{name: "input policy drop, vlan accepted",
			policy:   map[string]string{"INPUT": "DROP"},
			rules:    `-A INPUT -i vl0.10 -j ACCEPT`,
			flows:    flows,
			want:     map[string]string{"hv->vlan:7101": "2/2 arrived", "hv->vlan:7102": "2/2 arrived"},
			counters: map[string]string{"INPUT policy": "0 0"}},
		{name: "input policy drop, parent accepted",
			policy:   map[string]string{"INPUT": "DROP"},
			rules:    `-A INPUT -i vl0 -j ACCEPT`,
			flows:    flows,
			want:     map[string]string{"hv->vlan:7101": "0/2 arrived", "hv->vlan:7102": "0/2 arrived"},
			counters: map[string]string{"INPUT 1": "0 0", "INPUT policy": count(4, 64)}},
		{name: "wildcard covers both",
			rules:    `-A INPUT -i vl0+ -p udp --dport 7101 -j DROP`,
			flows:    flows,
			want:     map[string]string{"hv->vlan:7101": "0/2 arrived", "hv->vlan:7102": "2/2 arrived"},
			counters: map[string]string{"INPUT 1": count(2, 64)}},
	})
}
