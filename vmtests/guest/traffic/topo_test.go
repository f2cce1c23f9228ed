//go:build vmguest

package traffic

import (
	"net/netip"
	"testing"

	nt "github.com/bpfilter/bpfilter/vmtests/guest/nettest"
)

// routed is a router topology of real hosts:
//
//	client ns                          DUT                               server ns
//	rcli0 10.6.0.2/24 (+ .3 to .8) <-> rt-c0 10.6.0.1/24 (+ .11 to .15)
//	                                   rt-s0 10.7.0.1/24            <->  rsrv0 10.7.0.2/24
//
// with default routes through the DUT, ARP as usual and no IPv6. Nothing
// answers a datagram that reaches a listener, and every flow has one.
type routed struct {
	dut, client, server *nt.Host
}

const (
	rtClientIf = "rt-c0"
	rtServerIf = "rt-s0"
)

var (
	rtDUT    = netip.MustParseAddr("10.6.0.1")
	rtClient = netip.MustParseAddr("10.6.0.2")
	rtDUTS   = netip.MustParseAddr("10.7.0.1")
	rtServer = netip.MustParseAddr("10.7.0.2")
)

// rtAddr is 10.6.0.i.
func rtAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 6, 0, byte(i)}) }

func setupRouted(t *testing.T) *routed {
	t.Helper()
	r := &routed{dut: nt.DUTHost(t), client: nt.NewHost(t, "client"), server: nt.NewHost(t, "server")}
	nt.Pair(t, r.dut, rtClientIf, r.client, "rcli0")
	nt.Pair(t, r.dut, rtServerIf, r.server, "rsrv0")
	r.dut.Addr(t, rtClientIf, "10.6.0.1/24")
	for i := 11; i <= 15; i++ {
		r.dut.Addr(t, rtClientIf, rtAddr(i).String()+"/24")
	}
	r.dut.Addr(t, rtServerIf, "10.7.0.1/24")
	for i := 2; i <= 8; i++ {
		r.client.Addr(t, "rcli0", rtAddr(i).String()+"/24")
	}
	r.server.Addr(t, "rsrv0", "10.7.0.2/24")
	r.client.DefaultRoute(t, rtDUT)
	r.server.DefaultRoute(t, rtDUTS)
	for _, l := range []string{rtClientIf, rtServerIf} {
		nt.Sysctl(t, "ipv4/conf/"+l+"/rp_filter", "0")
	}
	return r
}

// ap is addr:port.
func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// in is a flow from the client to the DUT's address a, port.
func (r *routed) in(name string, a netip.Addr, port uint16) flow {
	return flow{name: name, from: r.client, to: r.dut, dst: ap(a, port)}
}

// fwd is a flow from the client through the DUT to the server's port.
func (r *routed) fwd(name string, port uint16) flow {
	return flow{name: name, from: r.client, to: r.server, dst: ap(rtServer, port)}
}

// out is a flow from the DUT to the server's port.
func (r *routed) out(name string, port uint16) flow {
	return flow{name: name, from: r.dut, to: r.server, dst: ap(rtServer, port)}
}
