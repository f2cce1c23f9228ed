//go:build vmguest

package traffic

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
	nt "github.com/bpfilter/bpfilter/vmtests/guest/nettest"
)

const (
	seedBurst   = 5
	seedPayload = 100
	seedIPLen   = 20 + 8 + seedPayload // what ip_tables counts per datagram
)

// seed002 is the rule of seed 002, -A INPUT -p udp --dport 23 -j DROP,
// against real UDP sockets: the client's to the DUT's listeners on ports
// 23 and 24. Port 23 gets nothing, port 24 everything, the rule counts
// the dropped datagrams (packets and bytes), and after -F port 23 gets
// everything. It returns the final iptables-legacy -L -v -x -n.
func seed002(t *testing.T, topo *nt.Topology) string {
	gt.MustRun(t, "iptables-legacy", "-A", "INPUT", "-p", "udp", "--dport", "23", "-j", "DROP")
	l23, l24 := listen(t, 23), listen(t, 24)
	c := dial(t, topo)

	if n := exchange(t, c, l23); n != 0 {
		t.Errorf("port 23: %d of %d datagrams arrived through the DROP rule", n, seedBurst)
	}
	if n := exchange(t, c, l24); n != seedBurst {
		t.Errorf("port 24: %d of %d datagrams arrived", n, seedBurst)
	}
	list := gt.MustRun(t, "iptables-legacy", "-L", "INPUT", "-v", "-x", "-n")
	rule := regexp.MustCompile(`(?m)^\s*(\d+)\s+(\d+)\s+DROP\s+(17|udp)\s.*udp dpt:23\s*$`).FindStringSubmatch(list)
	if rule == nil {
		t.Fatalf("no DROP rule for udp dpt:23 in\n%s", list)
	}
	wantCounts(t, "the DROP rule", rule[1], rule[2], seedBurst)
	wantPolicy(t, list, seedBurst)

	gt.MustRun(t, "iptables-legacy", "-F")
	if n := exchange(t, c, l23); n != seedBurst {
		t.Errorf("port 23 after -F: %d of %d datagrams arrived", n, seedBurst)
	}
	// After iptables-legacy -F the policy counters start again from
	// zero (so ip_tables shows, here and on other kernels): the policy
	// has counted port 23's datagrams alone since.
	list = gt.MustRun(t, "iptables-legacy", "-L", "INPUT", "-v", "-x", "-n")
	wantPolicy(t, list, seedBurst)
	return gt.MustRun(t, "iptables-legacy", "-t", "filter", "-L", "-v", "-x", "-n")
}

func wantCounts(t *testing.T, what, pkts, bytes string, n int) {
	t.Helper()
	p, _ := strconv.Atoi(pkts)
	b, _ := strconv.Atoi(bytes)
	if p != n || b != n*seedIPLen {
		t.Errorf("%s: %d packets, %d bytes; want %d packets, %d bytes", what, p, b, n, n*seedIPLen)
	} else {
		t.Logf("%s: %d packets, %d bytes", what, p, b)
	}
}

func wantPolicy(t *testing.T, list string, n int) {
	t.Helper()
	m := regexp.MustCompile(`Chain INPUT \(policy ACCEPT (\d+) packets, (\d+) bytes\)`).FindStringSubmatch(list)
	if m == nil {
		t.Fatalf("no INPUT policy line in\n%s", list)
	}
	wantCounts(t, "the INPUT policy", m[1], m[2], n)
}

// listen is a UDP socket of the DUT on DUTAddr:port.
func listen(t *testing.T, port uint16) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(nt.DUTAddr, port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dial is an unconnected UDP socket of the client.
func dial(t *testing.T, topo *nt.Topology) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := topo.In(nt.Client, func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(nt.ClientAddr, 5000)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends seedBurst datagrams from c to l's port and returns how
// many l received.
func exchange(t *testing.T, c, l *net.UDPConn) int {
	t.Helper()
	to := l.LocalAddr().(*net.UDPAddr)
	msg := make([]byte, seedPayload)
	for i := 0; i < seedBurst; i++ {
		copy(msg, fmt.Sprintf("seed002 %d/%d", to.Port, i))
		if _, err := c.WriteToUDP(msg, to); err != nil {
			t.Fatalf("send to %v: %v", to, err)
		}
	}
	n := 0
	buf := make([]byte, 2*seedPayload)
	deadline := time.Now().Add(nt.Settle)
	for n < seedBurst {
		l.SetReadDeadline(deadline)
		k, _, err := l.ReadFromUDP(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			break
		}
		if err != nil {
			t.Fatalf("receive on %v: %v", to, err)
		}
		if k != seedPayload {
			t.Fatalf("receive on %v: %d bytes, want %d", to, k, seedPayload)
		}
		n++
	}
	return n
}
