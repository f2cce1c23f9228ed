//go:build linux

package nettest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Host is a network namespace of a test's own topology, or the DUT (the
// VM's initial namespace, whose filter table iptables-legacy sets), with
// a netlink socket in it. Setup's fixed topology suits single crafted
// probes; Hosts suit real sockets, bridges, VLANs and routing rules.
type Host struct {
	Name string
	NS   netns.NsHandle
	NL   *netlink.Handle
	dut  bool
}

// NewHost makes a network namespace with lo up and IPv6 off; t's end
// removes it.
func NewHost(t testing.TB, name string) *Host {
	t.Helper()
	ns, err := NewNamespace()
	if err != nil {
		t.Fatalf("nettest: namespace %s: %v", name, err)
	}
	h := &Host{Name: name, NS: ns}
	t.Cleanup(func() {
		if h.NL != nil {
			h.NL.Close()
		}
		ns.Close()
	})
	if err := RunIn(ns, noIPv6); err != nil {
		t.Fatalf("nettest: %s: %v", name, err)
	}
	if h.NL, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE); err != nil {
		t.Fatalf("nettest: netlink in %s: %v", name, err)
	}
	h.Up(t, "lo")
	return h
}

// DUTHost is the DUT as a Host. It disables IPv6 for links made later,
// reverse path filtering, and turns forwarding on, until t ends.
func DUTHost(t testing.TB) *Host {
	t.Helper()
	ns, err := netns.GetFromPath("/proc/1/ns/net")
	if err != nil {
		t.Fatalf("nettest: the initial namespace: %v", err)
	}
	h := &Host{Name: "DUT", NS: ns, dut: true}
	t.Cleanup(func() {
		if h.NL != nil {
			h.NL.Close()
		}
		ns.Close()
	})
	if h.NL, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE); err != nil {
		t.Fatalf("nettest: netlink: %v", err)
	}
	for _, f := range []string{"ipv6/conf/all/disable_ipv6", "ipv6/conf/default/disable_ipv6"} {
		if err := setDUTSysctl(t, f, "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"ipv4/conf/all/rp_filter", "ipv4/conf/default/rp_filter"} {
		Sysctl(t, f, "0")
	}
	Sysctl(t, "ipv4/ip_forward", "1")
	return h
}

// Sysctl sets the DUT's /proc/sys/net/<name> to v until t ends.
func Sysctl(t testing.TB, name, v string) {
	t.Helper()
	if err := setDUTSysctl(t, name, v); err != nil {
		t.Fatalf("nettest: %v", err)
	}
}

// Do runs f on a thread in h's namespace.
func (h *Host) Do(f func() error) error { return RunIn(h.NS, f) }

// Link is h's link name.
func (h *Host) Link(t testing.TB, name string) netlink.Link {
	t.Helper()
	l, err := h.NL.LinkByName(name)
	if err != nil {
		t.Fatalf("nettest: %s: link %s: %v", h.Name, name, err)
	}
	return l
}

// Up brings h's link name up.
func (h *Host) Up(t testing.TB, name string) {
	t.Helper()
	if err := h.NL.LinkSetUp(h.Link(t, name)); err != nil {
		t.Fatalf("nettest: %s: %s up: %v", h.Name, name, err)
	}
}

// Addr adds address cidr to h's link name.
func (h *Host) Addr(t testing.TB, name, cidr string) {
	t.Helper()
	if err := addAddr(h.NL, name, cidr); err != nil {
		t.Fatalf("nettest: %s: %v", h.Name, err)
	}
}

// Route adds a route to dst via gw (gw invalid: none).
func (h *Host) Route(t testing.TB, dst netip.Prefix, gw netip.Addr) {
	t.Helper()
	r := &netlink.Route{Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)}}
	if gw.IsValid() {
		r.Gw = gw.AsSlice()
	}
	if err := h.NL.RouteAdd(r); err != nil {
		t.Fatalf("nettest: %s: route %v via %v: %v", h.Name, dst, gw, err)
	}
}

// DefaultRoute adds a default route via gw.
func (h *Host) DefaultRoute(t testing.TB, gw netip.Addr) {
	t.Helper()
	if err := h.NL.RouteAdd(&netlink.Route{Gw: gw.AsSlice()}); err != nil {
		t.Fatalf("nettest: %s: default route via %v: %v", h.Name, gw, err)
	}
}

// MAC is the hardware address of h's link name.
func (h *Host) MAC(t testing.TB, name string) net.HardwareAddr {
	t.Helper()
	return h.Link(t, name).Attrs().HardwareAddr
}

// add adds link l to h; a DUT link goes at t's end.
func (h *Host) add(t testing.TB, l netlink.Link) {
	t.Helper()
	if err := h.NL.LinkAdd(l); err != nil {
		t.Fatalf("nettest: %s: add %s %s: %v", h.Name, l.Type(), l.Attrs().Name, err)
	}
	if h.dut {
		name := l.Attrs().Name
		t.Cleanup(func() { delLink(name) })
	}
}

// Pair makes a veth pair, an in a and bn in b, and brings both ends up.
// One of a and b may be the DUT, which makes it; addresses are the
// caller's.
func Pair(t testing.TB, a *Host, an string, b *Host, bn string) {
	t.Helper()
	if b.dut {
		a, an, b, bn = b, bn, a, an
	}
	a.add(t, &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: an}, PeerName: bn,
		PeerNamespace: netlink.NsFd(int(b.NS))})
	a.Up(t, an)
	b.Up(t, bn)
}

// Bridge makes a bridge name in h (no STP: ports forward at once) and
// brings it up.
func (h *Host) Bridge(t testing.TB, name string) {
	t.Helper()
	h.add(t, &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}})
	h.Up(t, name)
}

// Enslave makes link port a port of bridge master.
func (h *Host) Enslave(t testing.TB, port, master string) {
	t.Helper()
	if err := h.NL.LinkSetMaster(h.Link(t, port), h.Link(t, master)); err != nil {
		t.Fatalf("nettest: %s: %s master %s: %v", h.Name, port, master, err)
	}
}

// VLAN makes an 802.1Q device name with VLAN id on parent and brings it up.
func (h *Host) VLAN(t testing.TB, parent, name string, id int) {
	t.Helper()
	p := h.Link(t, parent)
	h.add(t, &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: p.Attrs().Index}, VlanId: id})
	h.Up(t, name)
}

// String is h's name.
func (h *Host) String() string { return fmt.Sprint(h.Name) }

// UDPPacket is an IPv4 packet (IP id id, checksums set) carrying a UDP
// datagram with payload from src to dst.
func UDPPacket(src, dst netip.AddrPort, payload []byte, id uint16) []byte {
	l4 := UDP(src.Port(), dst.Port(), len(payload))
	copy(l4[8:], payload)
	p := Probe{Src: src.Addr(), Dst: dst.Addr(), Proto: unix.IPPROTO_UDP, L4: l4}
	return p.packet(id)
}

// PacketSocket is an AF_PACKET socket (SOCK_DGRAM, IPv4) on link ifindex
// of the calling thread's namespace: what it sends goes to the device
// directly, past the IP layer and its hooks.
func PacketSocket(ifindex int) (int, error) {
	proto := htons(unix.ETH_P_IP)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// PacketSend sends pkt, an IPv4 packet, on packet socket fd (of link
// ifindex) to the hardware address dst.
func PacketSend(fd, ifindex int, dst net.HardwareAddr, pkt []byte) error {
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex, Halen: uint8(len(dst))}
	copy(sa.Addr[:], dst)
	return unix.Sendto(fd, pkt, 0, sa)
}
