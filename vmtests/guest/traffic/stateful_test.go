//go:build vmguest

package traffic

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	nt "github.com/bpfilter/bpfilter/vmtests/guest/nettest"
	"golang.org/x/sys/unix"
)

// serving holds the servers a backend's run has started, so that cases
// sharing one (a container's port, say) start it once.
var serving = map[string]bool{}

// serveTCP is a step that starts a TCP server (tcpServer) for the rest of
// the backend's run; serveUDP likewise a UDP echo.
func serveTCP(h *nt.Host, at netip.AddrPort) sstep {
	return serveStep("tcp", h, at, tcpServer)
}

func serveUDP(h *nt.Host, at netip.AddrPort) sstep {
	return serveStep("udp", h, at, udpEcho)
}

func serveStep(proto string, h *nt.Host, at netip.AddrPort, serve func(*testing.T, *nt.Host, netip.AddrPort) func()) sstep {
	key := fmt.Sprintf("%s server in %s at %v", proto, h, at)
	return sstep{name: key, run: func(t *testing.T) string {
		if serving[key] {
			return "listening"
		}
		serving[key] = true
		stop := serve(t, h, at)
		t.Cleanup(func() { stop(); delete(serving, key) })
		return "listening"
	}}
}

func connectStep(name, want string, h *nt.Host, dst netip.AddrPort) sstep {
	return step(name, want, func() string { return tcpConnect(h, netip.Addr{}, 0, dst) })
}

func udpStep(name, want string, h *nt.Host, dst netip.AddrPort) sstep {
	return step(name, want, func() string { return udpExchange(h, netip.Addr{}, 0, dst, 64) })
}

func pingStep(name, want string, h *nt.Host, dst netip.Addr, id uint16) sstep {
	return step(name, want, func() string { return ping(h, dst, id) })
}

// strayACK is a crafted TCP ACK from the client to port of the DUT that
// belongs to no connection.
func strayACK(r *routed, sport, dport uint16) raw {
	return raw{src: rtClient, dst: rtDUT, proto: unix.IPPROTO_TCP, id: sport,
		l4: tcpOpts(sport, dport, nt.ACK, 0x5000, 0x6000, nil)}
}

// TestStateful: real TCP connections, UDP exchanges on connected sockets
// and pings between namespaces under conntrack rules (rev 3 and the state
// alias), with the DUT as a host (INPUT, OUTPUT) and as a router
// (FORWARD). ESTABLISHED replies pass a DROP policy, ICMP errors about a
// flow pass as RELATED and reach the sender's socket, a stray ACK is
// INVALID with nf_conntrack_tcp_loose=0 and NEW with the default.
func TestStateful(t *testing.T) {
	r := setupRouted(t)
	noICMPRateLimit(t, r.dut, r.client, r.server)
	host := `
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp --dport 9000 -m conntrack --ctstate NEW -j ACCEPT
-A INPUT -p udp --dport 9001 -m conntrack --ctstate NEW -j ACCEPT
-A INPUT -p icmp --icmp-type echo-request -m conntrack --ctstate NEW -j ACCEPT
-A INPUT -p tcp --dport 9002 -j REJECT --reject-with tcp-reset
-A INPUT -p udp --dport 9003 -j REJECT
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i rt-c0 -o rt-s0 -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -m conntrack ! --ctstate NEW,ESTABLISHED,RELATED,INVALID,UNTRACKED -j DROP
-A OUTPUT -m conntrack --ctstate NEW,ESTABLISHED,RELATED -j ACCEPT`
	state := `
-A INPUT -p tcp --dport 9020 -j ACCEPT
-A OUTPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
-A OUTPUT -p tcp --dport 9020 -m state --state NEW -j ACCEPT
-A OUTPUT -p icmp -m state --state NEW -j ACCEPT
-A OUTPUT -p udp -m state --state INVALID -j DROP`
	dut := func(port uint16) netip.AddrPort { return ap(rtDUT, port) }
	srv := func(port uint16) netip.AddrPort { return ap(rtServer, port) }
	stateful(t, nil, []scase{
		{name: "host and router under conntrack",
			policy: map[string]string{"INPUT": "DROP", "FORWARD": "DROP"},
			rules:  host,
			steps: []sstep{
				serveTCP(r.dut, dut(9000)), serveUDP(r.dut, dut(9001)), serveTCP(r.server, srv(9010)),
				connectStep("tcp to the DUT:9000, data both ways", "connected, 200 bytes back", r.client, dut(9000)),
				udpStep("udp to the DUT:9001 and its echo", "echo of 64 bytes", r.client, dut(9001)),
				pingStep("ping the DUT", "echo reply from 10.6.0.1", r.client, rtDUT, 0x901),
				connectStep("tcp to 9002: REJECT tcp-reset", "connect: ECONNREFUSED", r.client, dut(9002)),
				udpStep("udp to 9003: REJECT", "ECONNREFUSED by ICMP 3/3 from 10.6.0.1", r.client, dut(9003)),
				connectStep("tcp to 9004: the policy", "connect: no answer", r.client, dut(9004)),
				connectStep("tcp through the DUT to the server:9010", "connected, 200 bytes back", r.client, srv(9010)),
				udpStep("udp through the DUT to a closed port: RELATED", "ECONNREFUSED by ICMP 3/3 from 10.7.0.2", r.client, srv(9011)),
				pingStep("ping through the DUT", "echo reply from 10.7.0.2", r.client, rtServer, 0x902),
				udpStep("the DUT's udp to a closed port of the client: RELATED in", "ECONNREFUSED by ICMP 3/3 from 10.6.0.2",
					r.dut, ap(rtClient, 9012)),
				sysctlStep("netfilter/nf_conntrack_tcp_loose", "0"),
				sendStep("a stray ACK to 9000: INVALID", func() error { return sendRaw(r.client, strayACK(r, 41000, 9000)) }),
				sysctlStep("netfilter/nf_conntrack_tcp_loose", "1"),
				sendStep("a stray ACK to 9000, picked up: NEW", func() error { return sendRaw(r.client, strayACK(r, 41001, 9000)) }),
			},
			counters: map[string]string{
				"INPUT 1":      "1 40",  // the first stray ACK
				"INPUT 3":      "2 100", // the SYN to 9000 and the picked-up ACK
				"INPUT 5":      "1 84",  // the echo request
				"INPUT 6":      "1 60",  // the SYN to 9002
				"INPUT 7":      "1 92",  // the datagram to 9003
				"INPUT policy": "1 60",  // the SYN to 9004
				"FORWARD 3":    "0 0",
			}},
		{name: "the state match",
			policy: map[string]string{"OUTPUT": "DROP"},
			rules:  state,
			steps: []sstep{
				serveTCP(r.server, srv(9020)), serveTCP(r.server, srv(9021)),
				connectStep("the DUT's tcp to the server:9020", "connected, 200 bytes back", r.dut, srv(9020)),
				connectStep("the DUT's tcp to the server:9021: the policy", "connect: no answer", r.dut, srv(9021)),
				pingStep("the DUT pings the server", "echo reply from 10.7.0.2", r.dut, rtServer, 0x903),
			},
			counters: map[string]string{"OUTPUT 2": "1 60", "OUTPUT 3": "1 84", "OUTPUT policy": "1 60"}},
	})
}

// TestReject: every --reject-with type, on INPUT and FORWARD, seen by the
// sender: a TCP connect fails with the errno the ICMP error (or the reset)
// means, a connected UDP socket with IP_RECVERR gets the error and its
// queue names the ICMP type and code.
func TestReject(t *testing.T) {
	r := setupRouted(t)
	noICMPRateLimit(t, r.dut, r.client, r.server)
	types := []struct {
		with, errno, icmp string
	}{
		{"icmp-net-unreachable", "ENETUNREACH", "3/0"},
		{"icmp-host-unreachable", "EHOSTUNREACH", "3/1"},
		{"icmp-proto-unreachable", "ENOPROTOOPT", "3/2"},
		{"icmp-port-unreachable", "ECONNREFUSED", "3/3"},
		{"icmp-net-prohibited", "ENETUNREACH", "3/9"},
		{"icmp-host-prohibited", "EHOSTUNREACH", "3/10"},
		{"icmp-admin-prohibited", "EHOSTUNREACH", "3/13"},
	}
	rules := ""
	var steps []sstep
	for i, ty := range types {
		port := uint16(9100 + i)
		rules += fmt.Sprintf("-A INPUT -p tcp --dport %d -j REJECT --reject-with %s\n", port, ty.with)
		rules += fmt.Sprintf("-A INPUT -p udp --dport %d -j REJECT --reject-with %s\n", port, ty.with)
		steps = append(steps,
			connectStep("tcp to "+ty.with, "connect: "+ty.errno, r.client, ap(rtDUT, port)),
			udpStep("udp to "+ty.with, ty.errno+" by ICMP "+ty.icmp+" from 10.6.0.1", r.client, ap(rtDUT, port)))
	}
	rules += `
-A INPUT -p tcp --dport 9110 -j REJECT --reject-with tcp-reset
-A FORWARD -p tcp --dport 9111 -j REJECT --reject-with tcp-reset
-A FORWARD -p udp --dport 9112 -j REJECT
-A OUTPUT -p tcp --tcp-flags RST RST
-A OUTPUT -p icmp --icmp-type destination-unreachable`
	steps = append(steps,
		connectStep("tcp to tcp-reset", "connect: ECONNREFUSED", r.client, ap(rtDUT, 9110)),
		connectStep("tcp through the DUT to tcp-reset", "connect: ECONNREFUSED", r.client, ap(rtServer, 9111)),
		udpStep("udp through the DUT to REJECT", "ECONNREFUSED by ICMP 3/3", r.client, ap(rtServer, 9112)))
	stateful(t, nil, []scase{{name: "every reject type", rules: rules, steps: steps,
		counters: map[string]string{
			"INPUT 1": "1 60", "INPUT 2": "1 92", "INPUT 15": "1 60", "FORWARD 1": "1 60", "FORWARD 2": "1 92",
			// resets sent: the two tcp-reset rules; ICMP errors: 7
			// UDP and 7 TCP on INPUT, 1 UDP on FORWARD
			"OUTPUT 1": "2 80"}}})
}

// udpSendAs sends one datagram of 64 bytes from h, from src to dst, on an
// unconnected socket made with effective uid uid (-1: as is), and says
// whether the send failed.
func udpSendAs(h *nt.Host, uid int, src, dst netip.AddrPort) string {
	var out string
	err := h.Do(func() error {
		if uid >= 0 {
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
				return e
			}
			defer unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0))
		}
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(src))
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.WriteToUDPAddrPort(make([]byte, 64), dst); err != nil {
			out = "send: " + errnoName(err)
		} else {
			out = "sent"
		}
		return nil
	})
	if err != nil {
		return "error: " + err.Error()
	}
	return out
}
