//go:build vmguest

package traffic

import (
	"net/netip"

	nt "github.com/bpfilter/bpfilter/vmtests/guest/nettest"
	"golang.org/x/sys/unix"
)

// Source addresses of the probes: none of them is routable from the DUT,
// so that it answers nothing (see nettest).
var (
	srcA  = netip.MustParseAddr("10.77.1.1")
	srcB  = netip.MustParseAddr("10.77.1.200")
	srcC  = netip.MustParseAddr("10.78.0.5")
	srcLo = netip.MustParseAddr("10.79.0.1") // the DUT's own loopback probes
)

var (
	dut     = nt.DUTAddr       // 10.1.0.1
	dut2    = nt.DUTAddr2      // 10.1.0.9
	dutS    = nt.DUTServerAddr // 10.2.0.1
	server  = nt.ServerAddr    // 10.2.0.2
	server2 = nt.ServerAddr2   // 10.2.0.3
	remote  = netip.MustParseAddr("10.3.0.7")
)

const (
	tcp = unix.IPPROTO_TCP
	udp = unix.IPPROTO_UDP
	icm = unix.IPPROTO_ICMP
	exp = 253 // RFC 3692 experimental protocol number
)

func pr(name string, path nt.Path, src, dst netip.Addr, proto uint8, l4 []byte) nt.Probe {
	return nt.Probe{Name: name, Path: path, Src: src, Dst: dst, Proto: proto, L4: l4}
}

func frag(p nt.Probe, off uint16, more bool) nt.Probe {
	p.FragOff, p.MoreFrags = off, more
	return p
}

// probes is the fixed list that every rule set meets, on both backends.
// Names tell path, protocol and what matters; the rule sets' expectations
// name them.
var probes = []nt.Probe{
	// Input: client -> DUT.
	pr("in-udp23", nt.Input, srcA, dut, udp, nt.UDP(5000, 23, 100)),
	pr("in-udp24", nt.Input, srcA, dut, udp, nt.UDP(5000, 24, 100)),
	pr("in-udp53", nt.Input, srcC, dut, udp, nt.UDP(53, 53, 40)),
	pr("in-udp1500", nt.Input, srcB, dut, udp, nt.UDP(5050, 1500, 10)),
	pr("in-udp3000-dut2", nt.Input, srcA, dut2, udp, nt.UDP(6000, 3000, 0)),
	pr("in-tcp22-syn", nt.Input, srcA, dut, tcp, nt.TCP(40000, 22, nt.SYN)),
	pr("in-tcp80-syn", nt.Input, srcB, dut, tcp, nt.TCP(40001, 80, nt.SYN)),
	pr("in-tcp443-ack", nt.Input, srcC, dut, tcp, nt.TCP(40002, 443, nt.ACK)),
	pr("in-tcp-synack-from22", nt.Input, srcA, dut, tcp, nt.TCP(22, 50000, nt.SYN|nt.ACK)),
	pr("in-tcp8080-xmas", nt.Input, srcA, dut, tcp, nt.TCP(40004, 8080, nt.FIN|nt.PSH|nt.URG)),
	pr("in-icmp-echo", nt.Input, srcA, dut, icm, nt.ICMP(8, 0, 56)),
	pr("in-icmp-portunreach", nt.Input, srcC, dut, icm, nt.ICMP(3, 3, 28)),
	pr("in-icmp-reply-dut2", nt.Input, srcB, dut2, icm, nt.ICMP(0, 0, 8)),
	pr("in-p253", nt.Input, srcA, dut, exp, make([]byte, 16)),

	// Forward: client -> server side, through the DUT.
	pr("fwd-udp23", nt.Forward, srcA, server, udp, nt.UDP(5000, 23, 100)),
	pr("fwd-udp24", nt.Forward, srcC, server, udp, nt.UDP(5000, 24, 100)),
	pr("fwd-udp2000-remote", nt.Forward, srcB, remote, udp, nt.UDP(5353, 2000, 20)),
	pr("fwd-tcp22-syn", nt.Forward, srcA, server, tcp, nt.TCP(40000, 22, nt.SYN)),
	pr("fwd-tcp80-syn-remote", nt.Forward, srcC, remote, tcp, nt.TCP(40001, 80, nt.SYN)),
	pr("fwd-tcp443-rstack-server2", nt.Forward, srcA, server2, tcp, nt.TCP(40002, 443, nt.RST|nt.ACK)),
	pr("fwd-tcp1500-finack", nt.Forward, srcB, server, tcp, nt.TCP(40005, 1500, nt.FIN|nt.ACK)),
	pr("fwd-icmp-echo", nt.Forward, srcA, server, icm, nt.ICMP(8, 0, 56)),
	pr("fwd-icmp-timex-remote", nt.Forward, srcC, remote, icm, nt.ICMP(11, 0, 28)),
	pr("fwd-icmp-hostunreach-server2", nt.Forward, srcB, server2, icm, nt.ICMP(3, 1, 28)),
	// A non-first fragment whose data looks like a UDP header to port 23
	// (no port match may look at it), a TCP fragment at offset 1 (which
	// ip_tables' tcp match drops on sight), a first fragment (it has its
	// ports), and a UDP header cut to its first 4 bytes (the udp match
	// drops it, -p udp alone and multiport do not).
	frag(pr("fwd-frag-udp", nt.Forward, srcA, server, udp, nt.UDP(5000, 23, 8)), 2, false),
	frag(pr("fwd-frag1-tcp", nt.Forward, srcA, server, tcp, nt.TCP(40000, 22, nt.SYN)[:16]), 1, true),
	frag(pr("fwd-firstfrag-udp23", nt.Forward, srcA, server, udp, nt.UDP(5000, 23, 24)), 0, true),
	pr("fwd-udp-truncated", nt.Forward, srcC, server, udp, nt.UDP(5000, 24, 0)[:4]),
	pr("fwd-p253-remote", nt.Forward, srcB, remote, exp, make([]byte, 16)),

	// Output: the DUT -> server side.
	pr("out-udp23", nt.Output, dutS, server, udp, nt.UDP(5000, 23, 100)),
	pr("out-udp24", nt.Output, dutS, server, udp, nt.UDP(5000, 24, 100)),
	pr("out-udp53-remote", nt.Output, dutS, remote, udp, nt.UDP(53, 53, 40)),
	pr("out-tcp22-syn", nt.Output, dutS, server, tcp, nt.TCP(40000, 22, nt.SYN)),
	pr("out-tcp80-ack-remote", nt.Output, dutS, remote, tcp, nt.TCP(40001, 80, nt.ACK)),
	pr("out-icmp-echo-server2", nt.Output, dutS, server2, icm, nt.ICMP(8, 0, 56)),
	pr("out-icmp-portunreach", nt.Output, dutS, server, icm, nt.ICMP(3, 3, 28)),
	frag(pr("out-frag-udp", nt.Output, dutS, server, udp, nt.UDP(5000, 23, 8)), 3, false),
	pr("out-udp24-srcA", nt.Output, srcA, server, udp, nt.UDP(5000, 24, 30)),

	// Loopback: the DUT -> its own addresses over lo.
	pr("lo-udp23", nt.Loopback, srcLo, dut, udp, nt.UDP(5000, 23, 100)),
	pr("lo-tcp22-syn", nt.Loopback, srcLo, dut, tcp, nt.TCP(40000, 22, nt.SYN)),
	pr("lo-icmp-echo-dut2", nt.Loopback, srcLo, dut2, icm, nt.ICMP(8, 0, 56)),
}
