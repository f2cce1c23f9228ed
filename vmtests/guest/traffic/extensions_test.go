//go:build vmguest

package traffic

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
	nt "github.com/bpfilter/bpfilter/vmtests/guest/nettest"
	"golang.org/x/sys/unix"
)

// crafted UDP from the client to the DUT's port, with the IP header's
// TOS and TTL, and payload bytes.
func craftedUDP(id uint16, tos, ttl uint8, dport uint16, payload int) raw {
	return raw{src: rtClient, dst: rtDUT, proto: unix.IPPROTO_UDP, id: id, tos: tos, ttl: ttl,
		l4: nt.UDP(5555, dport, payload)}
}

// TestLog: LOG lines, with every option, are the same under both
// backends apart from their timestamps: the packets are crafted (fixed
// IP ids, sequence numbers, options), the DUT's own datagram is sent
// unconnected with DF (IP id 0). LOG does not end the traversal: the rule
// after it counts the same packets.
func TestLog(t *testing.T) {
	r := setupRouted(t)
	start, lines := logLines()
	syn := raw{src: rtClient, dst: rtDUT, proto: unix.IPPROTO_TCP, id: 0x1234, df: true,
		ipOpts: []byte{0x01, 0x01, 0x01, 0x00},
		l4:     tcpOpts(40100, 9200, nt.SYN, 0x11223344, 0, []byte{0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x04, 0x02})}
	echoReply := raw{src: rtClient, dst: rtServer, proto: unix.IPPROTO_ICMP, id: 0x4321, l4: nt.ICMP(0, 0, 8)}
	stateful(t, nil, []scase{{name: "LOG with every option",
		rules: `
-A INPUT -p tcp --dport 9200 -j LOG --log-prefix "bpf syn: " --log-level 6 --log-tcp-sequence --log-tcp-options --log-ip-options
-A INPUT -p tcp --dport 9200 -j DROP
-A INPUT -p udp --dport 9201 -j LOG
-A INPUT -p udp --dport 9201 -j DROP
-A FORWARD -p icmp -j LOG --log-prefix "fwd " --log-level crit
-A OUTPUT -p udp --dport 9202 -j LOG --log-prefix "out: " --log-uid --log-level debug`,
		steps: []sstep{
			start,
			sendStep("a SYN with IP and TCP options", func() error { return sendRaw(r.client, syn) }),
			sendStep("a datagram", func() error { return sendRaw(r.client, craftedUDP(0x77, 0, 64, 9201, 20)) }),
			sendStep("an echo reply through the DUT", func() error { return sendRaw(r.client, echoReply) }),
			step("the DUT's datagram as root", "sent", func() string {
				return udpSendAs(r.dut, -1, ap(rtDUTS, 9300), ap(rtServer, 9202))
			}),
			step("the DUT's datagram as nobody", "sent", func() string {
				return udpSendAs(r.dut, 65534, ap(rtDUTS, 9301), ap(rtServer, 9202))
			}),
			lines,
		},
		counters: map[string]string{"INPUT 1": "1 52", "INPUT 2": "1 52", "INPUT 3": "1 48", "INPUT 4": "1 48",
			"FORWARD 1": "1 36", "OUTPUT 1": "2 184"}}})
}

// TestLimit: a limit of 1/min with a burst of 3 lets the first 3 of 6
// datagrams through, under both; a replace (an unrelated -A) makes the
// rule anew, with full credits, as ip_tables' checkentry does.
func TestLimit(t *testing.T) {
	r := setupRouted(t)
	burst := func(name string) sstep {
		return sstep{name: name, want: "3/6 arrived", run: func(t *testing.T) string {
			return udpBurst(t, r.client, r.dut, ap(rtDUT, 9400), 6)
		}}
	}
	stateful(t, nil, []scase{{name: "burst of 3",
		rules: `
-A INPUT -p udp --dport 9400 -m limit --limit 1/min --limit-burst 3 -j ACCEPT
-A INPUT -p udp --dport 9400 -j DROP`,
		steps: []sstep{
			burst("6 datagrams"),
			step("iptables -A of another rule", "", func() string {
				out, err := gt.Run("iptables-legacy", "-A", "INPUT", "-p", "udp", "--dport", "9499", "-j", "DROP")
				return fmt.Sprintf("%v %s", err, out)
			}),
			burst("6 more after the replace"),
		},
		counters: map[string]string{"INPUT 1": count(6, 64), "INPUT 2": count(6, 64)}}})
}

// udpBurst sends n datagrams of 64 bytes from one host to a listener of
// another and says how many arrived.
func udpBurst(t *testing.T, from, to *nt.Host, dst netip.AddrPort, n int) string {
	fates := sendFlows(t, []flow{{name: "burst", from: from, to: to, dst: dst, n: n}})
	return fmt.Sprintf("%d/%d arrived", fates[0].arrived, n)
}

// TestMatches: nfacct, mark, mac, pkttype, length, ttl, tos, dscp, ecn,
// addrtype on crafted datagrams into the DUT, and owner on the DUT's own:
// each rule counts what ip_tables counts, and the drops fall alike.
func TestMatches(t *testing.T) {
	r := setupRouted(t)
	mac := r.client.MAC(t, "rcli0")
	rules := fmt.Sprintf(`
-A INPUT -p udp --dport 9700 -m nfacct --nfacct-name bpf-acct
-A INPUT -p udp --dport 9700 -m ttl --ttl-eq 5
-A INPUT -p udp --dport 9700 -m ttl --ttl-gt 60
-A INPUT -p udp --dport 9700 -m tos --tos 0x10
-A INPUT -p udp --dport 9700 -m dscp --dscp 0x2e
-A INPUT -p udp --dport 9700 -m ecn --ecn-ip-ect 3
-A INPUT -p udp --dport 9700 -m length --length 200:300
-A INPUT -p udp --dport 9700 -m pkttype --pkt-type unicast
-A INPUT -p udp --dport 9700 -m pkttype --pkt-type broadcast -j DROP
-A INPUT -p udp --dport 9700 -m mac --mac-source %s
-A INPUT -p udp --dport 9700 -m mac ! --mac-source 02:00:00:00:00:01 -m addrtype --dst-type LOCAL --limit-iface-in
-A INPUT -p udp --dport 9700 -m addrtype --src-type LOCAL -j DROP
-A INPUT -p udp --dport 9700 -m mark --mark 0x1/0x1 -j DROP
-A INPUT -p udp --dport 9700 -m mark --mark 0x0 -m length --length 0:100 -j DROP
-A OUTPUT -p udp --dport 9701 -m owner --uid-owner 65534 -j DROP
-A OUTPUT -p udp --dport 9701 -m owner ! --uid-owner 0 -j DROP
-A OUTPUT -p udp --dport 9701 -m owner --socket-exists`, mac)
	stateful(t, nil, []scase{{name: "matches on crafted datagrams",
		prepare: func(t *testing.T) { nfacctAdd(t, "bpf-acct") },
		rules:   rules,
		steps: []sstep{
			// 56 + 28 = 84 bytes, TTL 5, TOS 0x10.
			sendStep("ttl 5 tos 0x10, 84 bytes", func() error { return sendRaw(r.client, craftedUDP(1, 0x10, 5, 9700, 56)) }),
			// DSCP 0x2e (TOS 0xb8), 228 bytes.
			sendStep("dscp 0x2e, 228 bytes", func() error { return sendRaw(r.client, craftedUDP(2, 0xb8, 64, 9700, 200)) }),
			// ECN CE (TOS 0x03), 128 bytes.
			sendStep("ecn CE, 128 bytes", func() error { return sendRaw(r.client, craftedUDP(3, 0x03, 64, 9700, 100)) }),
			nfacctStep("bpf-acct", "pkts 3 bytes 440 use 2"),
			step("the DUT's datagram as root", "sent", func() string {
				return udpSendAs(r.dut, -1, ap(rtDUTS, 9310), ap(rtServer, 9701))
			}),
			step("the DUT's datagram as nobody", "send: EPERM", func() string {
				return udpSendAs(r.dut, 65534, ap(rtDUTS, 9311), ap(rtServer, 9701))
			}),
		},
		counters: map[string]string{
			"INPUT 1": "3 440", "INPUT 2": "1 84", "INPUT 3": "2 356", "INPUT 4": "1 84", "INPUT 5": "1 228",
			"INPUT 6": "1 128", "INPUT 7": "1 228", "INPUT 8": "3 440", "INPUT 9": "0 0", "INPUT 10": "3 440",
			"INPUT 11": "3 440", "INPUT 12": "0 0", "INPUT 13": "0 0", "INPUT 14": "1 84",
			"OUTPUT 1": "1 92", "OUTPUT 2": "0 0", "OUTPUT 3": "1 92",
		}}})
}

// TestRecent: recent's options one by one on crafted datagrams from the
// client: --set (by source), --rcheck with --seconds and --hitcount,
// --remove, --set and --update by destination under --mask, --update
// with --reap and --rttl (the same TTL matches, another does not). Each
// rule counts what ip_tables counts, and /proc/net/xt_recent shows the
// same entries.
func TestRecent(t *testing.T) {
	r := setupRouted(t)
	// The DUT answers each accepted datagram (no listener) with a port
	// unreachable, which OUTPUT counts: under both backends alike.
	noICMPRateLimit(t, r.dut, r.client, r.server)
	send := func(name string, dport uint16, ttl uint8) sstep {
		return sendStep(name, func() error { return sendRaw(r.client, craftedUDP(0x100+dport, 0, ttl, dport, 20)) })
	}
	stateful(t, nil, []scase{{name: "recent options",
		rules: `
-A INPUT -p udp --dport 9500 -m recent --name bpfr1 --set --rsource -j ACCEPT
-A INPUT -p udp --dport 9501 -m recent --name bpfr1 --rcheck --seconds 60 --hitcount 2 --rsource -j DROP
-A INPUT -p udp --dport 9501 -j ACCEPT
-A INPUT -p udp --dport 9502 -m recent --name bpfr1 --remove -j ACCEPT
-A INPUT -p udp --dport 9503 -m recent --name bpfr2 --set --rdest --mask 255.255.255.0 -j ACCEPT
-A INPUT -p udp --dport 9504 -m recent --name bpfr2 --update --rdest --mask 255.255.255.0 --seconds 60 --reap --rttl -j DROP
-A INPUT -p udp --dport 9504 -j ACCEPT`,
		steps: []sstep{
			send("set, twice", 9500, 64),
			send("set, twice (2)", 9500, 64),
			send("rcheck: 2 hits", 9501, 64),
			recentStep("bpfr1"),
			send("remove", 9502, 64),
			send("rcheck after the remove", 9501, 64),
			recentStep("bpfr1"),
			send("set by masked destination", 9503, 64),
			send("update, same TTL", 9504, 64),
			send("update, another TTL", 9504, 10),
			recentStep("bpfr2"),
		},
		counters: map[string]string{
			"INPUT 1": "2 96", "INPUT 2": "1 48", "INPUT 3": "1 48", "INPUT 4": "1 48",
			"INPUT 5": "1 48", "INPUT 6": "1 48", "INPUT 7": "1 48",
		}}})
}
