//go:build vmguest

package traffic

import (
	"errors"
	"fmt"
	"testing"

	nt "github.com/bpfilter/bpfilter/vmtests/guest/nettest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestOutputEPERM: a datagram that OUTPUT drops fails its sender's
// sendto with EPERM (nf_hook's NF_DROP_GETERR), by a rule or by the
// policy, and counts as ip_tables counts it.
func TestOutputEPERM(t *testing.T) {
	r := setupRouted(t)
	flows := []flow{
		r.out("out 8800", 8800), r.out("out 8801", 8801),
		{name: "out to the client 8802", from: r.dut, to: r.client, dst: ap(rtClient, 8802)},
	}
	differential(t, nil, []dcase{
		{name: "a rule drops",
			rules: `-A OUTPUT -p udp --dport 8800 -j DROP`,
			flows: flows,
			want: map[string]string{"out 8800": "0/2 arrived, 2 sends failed: EPERM", "out 8801": "2/2 arrived",
				"out to the client 8802": "2/2 arrived"},
			counters: map[string]string{"OUTPUT 1": count(2, 64), "OUTPUT policy": count(4, 64)}},
		{name: "the policy drops",
			policy: map[string]string{"OUTPUT": "DROP"},
			rules:  `-A OUTPUT -o rt-s0 -p udp --dport 8801 -j ACCEPT`,
			flows:  flows,
			want: map[string]string{"out 8800": "0/2 arrived, 2 sends failed: EPERM", "out 8801": "2/2 arrived",
				"out to the client 8802": "0/2 arrived, 2 sends failed: EPERM"},
			counters: map[string]string{"OUTPUT 1": count(2, 64), "OUTPUT policy": count(4, 64)}},
		{name: "a user chain drops",
			rules: `
:out - [0:0]
-A OUTPUT -j out
-A out -d 10.6.0.2 -j DROP
-A out -j RETURN`,
			flows:    flows,
			want:     map[string]string{"out 8800": "2/2 arrived", "out to the client 8802": "0/2 arrived, 2 sends failed: EPERM"},
			counters: map[string]string{"OUTPUT 1": count(6, 64), "out 1": count(2, 64), "out 2": count(4, 64)}},
	})
}

// TestPacketSocket: what the DUT sends through an AF_PACKET socket (as
// dhclient does) goes to the device past the IP layer: OUTPUT never sees
// it, whatever its rules and policy, while the DUT's ordinary datagrams
// meet them.
func TestPacketSocket(t *testing.T) {
	r := setupRouted(t)
	ifindex := r.dut.Link(t, rtClientIf).Attrs().Index
	mac := r.client.MAC(t, "rcli0")
	var fd int
	if err := r.dut.Do(func() (err error) { fd, err = nt.PacketSocket(ifindex); return err }); err != nil {
		t.Fatalf("packet socket on %s: %v", rtClientIf, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	id := uint16(0)
	packet := func(payload []byte) error {
		id++
		return nt.PacketSend(fd, ifindex, mac, nt.UDPPacket(ap(rtDUT, 4000), ap(rtClient, 8400), payload, id))
	}
	flows := []flow{
		{name: "af_packet to the client 8400", to: r.client, dst: ap(rtClient, 8400), send: packet},
		{name: "udp to the client 8401", from: r.dut, to: r.client, dst: ap(rtClient, 8401)},
	}
	differential(t, nil, []dcase{
		{name: "output rules",
			rules: `
-A OUTPUT -p udp --dport 8400 -j DROP
-A OUTPUT -p udp --dport 8401 -j DROP
-A OUTPUT`,
			flows: flows,
			want: map[string]string{"af_packet to the client 8400": "2/2 arrived from 10.6.0.1",
				"udp to the client 8401": "0/2 arrived, 2 sends failed: EPERM"},
			counters: map[string]string{"OUTPUT 1": "0 0", "OUTPUT 2": count(2, 64), "OUTPUT 3": "0 0"}},
		{name: "output policy drop",
			policy: map[string]string{"OUTPUT": "DROP"},
			flows:  flows,
			want: map[string]string{"af_packet to the client 8400": "2/2 arrived from 10.6.0.1",
				"udp to the client 8401": "0/2 arrived, 2 sends failed: EPERM"},
			counters: map[string]string{"OUTPUT policy": count(2, 64)}},
	})
}

// TestForeignTC: a tc filter of someone else's on the DUT's interfaces
// (clsact, matchall, action ok, at the first priority) ends TC's
// classification early; the filter table's rules apply all the same.
func TestForeignTC(t *testing.T) {
	r := setupRouted(t)
	type hook struct {
		link   string
		parent uint32
		what   string
	}
	hooks := []hook{{rtClientIf, netlink.HANDLE_MIN_INGRESS, "ingress"}, {rtServerIf, netlink.HANDLE_MIN_EGRESS, "egress"},
		{rtClientIf, netlink.HANDLE_MIN_EGRESS, "egress"}, {rtServerIf, netlink.HANDLE_MIN_INGRESS, "ingress"}}
	setup := func(t *testing.T) func() []string {
		var added []netlink.Filter
		for _, h := range hooks {
			idx := r.dut.Link(t, h.link).Attrs().Index
			qd := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0),
				Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
			if err := r.dut.NL.QdiscAdd(qd); err != nil && !errors.Is(err, unix.EEXIST) {
				t.Fatalf("clsact on %s: %v", h.link, err)
			}
			f := &netlink.MatchAll{FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: h.parent, Priority: 1,
				Protocol: unix.ETH_P_ALL},
				Actions: []netlink.Action{&netlink.GenericAction{ActionAttrs: netlink.ActionAttrs{Action: netlink.TC_ACT_OK}}}}
			if err := r.dut.NL.FilterAdd(f); err != nil {
				t.Fatalf("matchall action ok on %s %s: %v", h.link, h.what, err)
			}
			added = append(added, f)
		}
		return func() []string {
			var lines []string
			for i, h := range hooks {
				fs, err := r.dut.NL.FilterList(r.dut.Link(t, h.link), h.parent)
				n := 0
				for _, f := range fs {
					if f.Type() == "matchall" && f.Attrs().Priority == 1 {
						n++
					}
				}
				lines = append(lines, fmt.Sprintf("matchall ok filters on %s %s: %d (%v)", h.link, h.what, n, err))
				if err := r.dut.NL.FilterDel(added[i]); err != nil {
					t.Errorf("removing the matchall filter on %s %s: %v", h.link, h.what, err)
				}
			}
			return lines
		}
	}
	flows := []flow{
		r.in("in 8500", rtDUT, 8500), r.in("in 8501", rtDUT, 8501),
		r.fwd("fwd 8510", 8510), r.fwd("fwd 8511", 8511),
		r.out("out 8520", 8520), r.out("out 8521", 8521),
	}
	differential(t, []string{"cls_matchall", "act_gact"}, []dcase{
		{name: "rules apply behind a foreign filter",
			setup: setup,
			rules: `
-A INPUT -p udp --dport 8500 -j DROP
-A FORWARD -p udp --dport 8510 -j DROP
-A OUTPUT -p udp --dport 8520 -j DROP`,
			flows: flows,
			want: map[string]string{"in 8500": "0/2 arrived", "in 8501": "2/2 arrived", "fwd 8510": "0/2 arrived",
				"fwd 8511": "2/2 arrived", "out 8520": "0/2 arrived, 2 sends failed: EPERM", "out 8521": "2/2 arrived"},
			counters: map[string]string{"INPUT 1": count(2, 64), "FORWARD 1": count(2, 64), "OUTPUT 1": count(2, 64)}},
		{name: "policies apply behind a foreign filter",
			setup:  setup,
			policy: drop3,
			rules: `
-A INPUT -p udp --dport 8501 -j ACCEPT
-A FORWARD -p udp --dport 8511 -j ACCEPT
-A OUTPUT -p udp --dport 8521 -j ACCEPT`,
			flows: flows,
			want: map[string]string{"in 8500": "0/2 arrived", "in 8501": "2/2 arrived", "fwd 8510": "0/2 arrived",
				"fwd 8511": "2/2 arrived", "out 8520": "0/2 arrived, 2 sends failed: EPERM", "out 8521": "2/2 arrived"},
			counters: map[string]string{"INPUT policy": count(2, 64), "FORWARD policy": count(2, 64), "OUTPUT policy": count(2, 64)}},
	})
}
