//go:build vmguest

package traffic

import (
	"embed"
	"fmt"
	"net/netip"
	"testing"

	nt "github.com/bpfilter/bpfilter/vmtests/guest/nettest"
	"golang.org/x/sys/unix"
)

// The real rulesets (testdata/*.rules, iptables-save format, each file
// saying which tool, version and source files it follows), restored
// through both backends and driven with real connections: allowed and
// refused services, established replies, pings, rejected ports; the same
// fates, LOG lines, recent lists, nfacct counters, and
// iptables-legacy -L -v -x -n and iptables-legacy-save -c byte for byte.

//go:embed testdata/*.rules
var rulesets embed.FS

func ruleset(t *testing.T, name string) string {
	t.Helper()
	b, err := rulesets.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// realHost is setupRouted plus what the rulesets need: a bridge docker0
// (172.17.0.1/16) with a container (172.17.0.2) behind it, which also
// serves as kube-proxy's pod, and a route to kube-proxy's service range.
type realHost struct {
	*routed
	ctr *nt.Host
}

var (
	ctrAddr = netip.MustParseAddr("172.17.0.2")
	svcAddr = netip.MustParseAddr("172.30.0.46")
)

func setupReal(t *testing.T) *realHost {
	t.Helper()
	h := &realHost{routed: setupRouted(t), ctr: nt.NewHost(t, "ctr")}
	h.dut.Bridge(t, "docker0")
	nt.Pair(t, h.dut, "vethctr0", h.ctr, "eth0")
	h.dut.Enslave(t, "vethctr0", "docker0")
	h.dut.Addr(t, "docker0", "172.17.0.1/16")
	h.ctr.Addr(t, "eth0", "172.17.0.2/16")
	h.ctr.DefaultRoute(t, netip.MustParseAddr("172.17.0.1"))
	h.dut.Route(t, netip.MustParsePrefix("172.30.0.0/16"), rtServer)
	nt.Sysctl(t, "ipv4/conf/docker0/rp_filter", "0")
	noICMPRateLimit(t, h.dut, h.client, h.server, h.ctr)
	return h
}

// from is a TCP connect from the client's address a, port sport (fixed,
// so that LOG lines and recent lists do not depend on the ephemeral
// port chosen).
func (h *realHost) from(name, want string, a netip.Addr, sport uint16, dst netip.AddrPort) sstep {
	return step(name, want, func() string { return tcpConnect(h.client, a, sport, dst) })
}

func (h *realHost) connect(name, want string, sport uint16, dst netip.AddrPort) sstep {
	return h.from(name, want, rtClient, sport, dst)
}

// TestRealRulesets: ufw, Docker 27 and 28, kube-proxy, fail2ban,
// firewalld and a classic stateful host firewall.
func TestRealRulesets(t *testing.T) {
	h := setupReal(t)
	dut := func(p uint16) netip.AddrPort { return ap(rtDUT, p) }
	ctr := func(p uint16) netip.AddrPort { return ap(ctrAddr, p) }
	srv := func(p uint16) netip.AddrPort { return ap(rtServer, p) }
	ufwLogStart, ufwLog := logLinesOf(true)
	classicLogStart, classicLog := logLinesOf(true)

	var ufwLimit []sstep
	for i := 1; i <= 7; i++ {
		want := "connected, 200 bytes back"
		if i >= 6 { // --set, then --update --hitcount 6: the 6th NEW already makes 6 stamps
			want = "connect: ECONNREFUSED"
		}
		ufwLimit = append(ufwLimit, h.connect(fmt.Sprintf("ufw limit: connection %d to 9801", i), want, uint16(42000+i), dut(9801)))
	}
	docker := func(file string) scase {
		return scase{name: file, restore: ruleset(t, file),
			steps: []sstep{
				serveTCP(h.ctr, ctr(80)), serveTCP(h.ctr, ctr(22)), serveTCP(h.client, ap(rtClient, 9810)),
				h.connect("the published port 8080", "connected, 200 bytes back", 43001, dut(8080)),
				h.connect("the container's unpublished port, routed", "connect: no answer", 43002, ctr(22)),
				h.connect("the container's port 80, routed", "connected, 200 bytes back", 43003, ctr(80)),
				step("the container connects out", "connected, 200 bytes back", func() string {
					return tcpConnect(h.ctr, netip.Addr{}, 43004, ap(rtClient, 9810))
				}),
				pingStep("the container pings the client", "echo reply from 10.6.0.2", h.ctr, rtClient, 0x981),
				pingStep("the client pings the container", "no answer", h.client, ctrAddr, 0x982),
			}}
	}
	kubeInvalid := raw{src: rtClient, dst: ctrAddr, proto: unix.IPPROTO_TCP, id: 0x9999,
		l4: tcpOpts(43100, 80, nt.SYN|nt.FIN, 0x7000, 0, nil)}

	stateful(t, []string{"iptable_nat", "xt_nat", "xt_MASQUERADE", "bridge"}, []scase{
		{name: "ufw", restore: ruleset(t, "ufw.rules"),
			steps: append(append([]sstep{
				ufwLogStart,
				serveTCP(h.dut, dut(9800)), serveTCP(h.dut, dut(9801)), serveTCP(h.dut, dut(9802)), serveTCP(h.server, srv(9803)),
				h.connect("ufw allow 9800/tcp", "connected, 200 bytes back", 42100, dut(9800)),
				h.connect("9802: not allowed, the policy", "connect: no answer", 42101, dut(9802)),
				pingStep("ping the host", "echo reply from 10.6.0.1", h.client, rtDUT, 0x980),
				udpStep("udp to 137: skip to policy", "no answer", h.client, dut(137)),
				connectStep("the host connects out", "connected, 200 bytes back", h.dut, srv(9803)),
			}, ufwLimit...), recentStep("DEFAULT"), ufwLog)},
		docker("docker-v27.rules"),
		docker("docker-v28.rules"),
		{name: "kube-proxy", restore: ruleset(t, "kube-proxy.rules"),
			prepare: func(t *testing.T) { nfacctAdd(t, "ct_state_invalid_dropped_pkts") },
			steps: []sstep{
				serveTCP(h.ctr, ctr(80)),
				h.connect("the node port 30080", "connected, 200 bytes back", 43200, dut(30080)),
				h.connect("a service without endpoints", "connect: ECONNREFUSED", 43201, ap(svcAddr, 80)),
				sendStep("a SYN|FIN to the pod: INVALID", func() error { return sendRaw(h.client, kubeInvalid) }),
				nfacctStep("ct_state_invalid_dropped_pkts", "pkts 1 bytes 40 use 2"),
				pingStep("the client pings the pod", "no answer", h.client, ctrAddr, 0x983),
			}},
		{name: "fail2ban", restore: ruleset(t, "fail2ban.rules"),
			steps: []sstep{
				serveTCP(h.dut, dut(9900)),
				h.from("from 10.6.0.2", "connected, 200 bytes back", rtClient, 43300, dut(9900)),
				h.from("from 10.6.0.3, banned", "connect: ECONNREFUSED", rtAddr(3), 43301, dut(9900)),
				h.from("from 10.6.0.4", "connected, 200 bytes back", rtAddr(4), 43302, dut(9900)),
				h.from("from 10.6.0.5, banned", "connect: ECONNREFUSED", rtAddr(5), 43303, dut(9900)),
				pingStep("a ping: the bans are for tcp 9900", "echo reply from 10.6.0.1", h.client, rtDUT, 0x984),
			}},
		{name: "firewalld", restore: ruleset(t, "firewalld.rules"),
			steps: []sstep{
				serveTCP(h.dut, dut(9950)), serveTCP(h.dut, dut(9951)), serveTCP(h.server, srv(9952)),
				h.connect("the ssh service", "connected, 200 bytes back", 43400, dut(9950)),
				h.connect("another port: the zone's REJECT", "connect: ECONNREFUSED", 43401, dut(9951)),
				pingStep("ping the host", "echo reply from 10.6.0.1", h.client, rtDUT, 0x985),
				h.connect("through the host: the forward zone's REJECT", "connect: ECONNREFUSED", 43402, srv(9952)),
				connectStep("the host connects out", "connected, 200 bytes back", h.dut, srv(9952)),
			}},
		{name: "classic", restore: ruleset(t, "classic.rules"),
			steps: []sstep{
				classicLogStart,
				serveTCP(h.dut, dut(9960)), serveTCP(h.dut, dut(9961)),
				h.connect("ssh", "connected, 200 bytes back", 43500, dut(9960)),
				pingStep("ping", "echo reply from 10.6.0.1", h.client, rtDUT, 0x986),
				h.connect("another port: tcp-reset", "connect: ECONNREFUSED", 43501, dut(9961)),
				step("udp: port unreachable", "ECONNREFUSED by ICMP 3/3 from 10.6.0.1", func() string {
					return udpExchange(h.client, rtClient, 43502, dut(9962), 64)
				}),
				classicLog,
			}},
	})
}
