//go:build linux

// Package nettest builds a small routed network inside the test VM and
// sends single crafted IPv4 packets (probes) through it, reporting which of
// them arrived. The guest tests use it to see what a filter table does to
// real packets, with ip_tables and with bpfilter alike.
//
// The topology (Setup):
//
//	client netns             DUT: the VM's initial netns           server netns
//	cli0 10.1.0.2/24 <-veth-> veth-c0 10.1.0.1/24 + 10.1.0.9/24
//	                          veth-s0 10.2.0.1/24       <-veth->    srv0 10.2.0.2/24
//	                          10.3.0.0/24 via 10.2.0.2
//
// The device under test (DUT) is the initial network namespace: the filter
// table there is the one iptables-legacy lists and changes without any
// setns, so a test runs iptables-legacy (gt.Restore, gt.MustRun) as usual.
// The DUT routes between client and server (ip_forward=1, rp_filter=0).
//
// Probes are sent on one of four paths (Path), each seen after the DUT's
// hooks: Input (client to a DUT address; seen by a raw socket of the DUT,
// which gets a packet only after INPUT let it through), Forward (client to
// the server side; seen by a packet socket on srv0, after FORWARD),
// Output (sent by the DUT to the server side; seen on srv0, after OUTPUT)
// and Loopback (sent by the DUT to its own address over lo; OUTPUT, then
// INPUT; seen by a raw socket of the DUT).
//
// Nothing but the probes crosses the DUT, so that counters compare exactly:
//   - no replies: probes use source addresses that the DUT has no route to
//     (anything outside 10.1.0.0/24, 10.2.0.0/24, 10.3.0.0/24: the tests
//     use 10.77.0.0/16 and the like), so the DUT's answers (TCP resets,
//     ICMP errors, echo replies) find no route and are never sent;
//   - the DUT reaches 10.2.0.2, 10.2.0.3 and, through 10.2.0.2,
//     10.3.0.0/24 with permanent neighbour entries holding a MAC address
//     that srv0 does not have: the server's IP stack drops what arrives
//     (not for this host) and answers nothing, but its packet socket sees
//     it;
//   - no ARP (the client's neighbour entries for the DUT are permanent too)
//     and no IPv6 on the veth pairs (disabled before they are made).
//
// Probes are matched by their IP id, unique per probe. A non-first
// fragment sent to a DUT address would wait for reassembly and never reach
// a socket: fragments go on the Forward and Output paths only.
package nettest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Interface names.
const (
	DUTClientIf = "veth-c0" // the DUT's interface toward the client
	DUTServerIf = "veth-s0" // the DUT's interface toward the server
	ClientIf    = "cli0"    // the client's end
	ServerIf    = "srv0"    // the server's end
)

// Addresses.
var (
	DUTAddr       = netip.MustParseAddr("10.1.0.1") // on veth-c0: the client's gateway
	DUTAddr2      = netip.MustParseAddr("10.1.0.9") // a second address on veth-c0
	ClientAddr    = netip.MustParseAddr("10.1.0.2") // on cli0
	DUTServerAddr = netip.MustParseAddr("10.2.0.1") // on veth-s0
	ServerAddr    = netip.MustParseAddr("10.2.0.2") // on srv0; the DUT's gateway to RemoteNet
	ServerAddr2   = netip.MustParseAddr("10.2.0.3") // reached on veth-s0 as well
	RemoteNet     = netip.MustParsePrefix("10.3.0.0/24")
)

// fakeMAC is what the DUT's neighbour entries for the server side hold:
// not srv0's address, so that the server's IP stack ignores what comes.
var fakeMAC = net.HardwareAddr{0x02, 0xbf, 0x00, 0x00, 0x00, 0x02}

// Path is the way a probe goes, and where its arrival is seen.
type Path int

// The paths.
const (
	Input    Path = iota // client -> DUT address: the DUT's INPUT
	Forward              // client -> server side through the DUT: FORWARD
	Output               // DUT -> server side: OUTPUT
	Loopback             // DUT -> DUT address over lo: OUTPUT, then INPUT
)

func (p Path) String() string {
	switch p {
	case Input:
		return "input"
	case Forward:
		return "forward"
	case Output:
		return "output"
	case Loopback:
		return "loopback"
	}
	return fmt.Sprintf("path(%d)", int(p))
}

// Namespace names one of the topology's namespaces other than the DUT.
type Namespace int

// The namespaces In runs code in.
const (
	Client Namespace = iota
	Server
)

// Settle is how long Send waits, after its last packet, for probes that
// have not arrived yet. A probe normally crosses the topology in the
// softirq that its own send raises, long before that; one arriving later
// still makes the next Send fail, and is never counted silently.
const Settle = 250 * time.Millisecond

// Topology is the network of Setup, with its senders and receivers.
type Topology struct {
	client, server netns.NsHandle

	clientTx int // raw IPPROTO_RAW socket of the client
	dutTx    int // raw IPPROTO_RAW socket of the DUT
	serverRx int // packet socket on srv0 (ETH_P_IP)
	dutRx    map[uint8]int
	nextID   uint16
	sent     map[uint16]sentProbe // the last probe sent with each IP id
}

// Setup builds the topology and removes it when t ends.
func Setup(t testing.TB) *Topology {
	t.Helper()
	tp := &Topology{client: netns.None(), server: netns.None(), clientTx: -1, dutTx: -1, serverRx: -1, dutRx: map[uint8]int{}, nextID: 1,
		sent: map[uint16]sentProbe{}}
	t.Cleanup(tp.close)
	if err := tp.setup(t); err != nil {
		t.Fatalf("nettest: %v", err)
	}
	return tp
}

func (tp *Topology) setup(t testing.TB) error {
	var err error
	if tp.client, err = NewNamespace(); err != nil {
		return fmt.Errorf("client netns: %w", err)
	}
	if tp.server, err = NewNamespace(); err != nil {
		return fmt.Errorf("server netns: %w", err)
	}
	// No IPv6 on the new links: no router solicitations, no MLD.
	for _, ns := range []netns.NsHandle{tp.client, tp.server} {
		if err := tp.in(ns, func() error { return noIPv6() }); err != nil {
			return err
		}
	}
	for _, f := range []string{"ipv6/conf/all/disable_ipv6", "ipv6/conf/default/disable_ipv6"} {
		if err := setDUTSysctl(t, f, "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for _, f := range []string{"ipv4/conf/all/rp_filter", "ipv4/conf/default/rp_filter"} {
		if err := setDUTSysctl(t, f, "0"); err != nil {
			return err
		}
	}

	dut, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer dut.Close()
	cl, err := netlink.NewHandleAt(tp.client, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in the client: %w", err)
	}
	defer cl.Close()
	sv, err := netlink.NewHandleAt(tp.server, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in the server: %w", err)
	}
	defer sv.Close()

	for _, h := range []*netlink.Handle{cl, sv} {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(lo); err != nil {
			return err
		}
	}
	cMAC, err := vethPair(dut, DUTClientIf, cl, ClientIf, tp.client)
	if err != nil {
		return err
	}
	t.Cleanup(func() { delLink(DUTClientIf) })
	if _, err := vethPair(dut, DUTServerIf, sv, ServerIf, tp.server); err != nil {
		return err
	}
	t.Cleanup(func() { delLink(DUTServerIf) })

	for _, a := range []struct {
		h    *netlink.Handle
		link string
		addr string
	}{
		{dut, DUTClientIf, DUTAddr.String() + "/24"},
		{dut, DUTClientIf, DUTAddr2.String() + "/24"},
		{dut, DUTServerIf, DUTServerAddr.String() + "/24"},
		{cl, ClientIf, ClientAddr.String() + "/24"},
		{sv, ServerIf, ServerAddr.String() + "/24"},
	} {
		if err := addAddr(a.h, a.link, a.addr); err != nil {
			return err
		}
	}
	for _, l := range []struct {
		h    *netlink.Handle
		name string
	}{{dut, DUTClientIf}, {dut, DUTServerIf}, {cl, ClientIf}, {sv, ServerIf}} {
		link, err := l.h.LinkByName(l.name)
		if err != nil {
			return err
		}
		if err := l.h.LinkSetUp(link); err != nil {
			return fmt.Errorf("%s up: %w", l.name, err)
		}
	}
	for _, f := range []string{"ipv4/conf/" + DUTClientIf + "/rp_filter", "ipv4/conf/" + DUTServerIf + "/rp_filter"} {
		if err := setDUTSysctl(t, f, "0"); err != nil {
			return err
		}
	}
	if err := setDUTSysctl(t, "ipv4/ip_forward", "1"); err != nil {
		return err
	}

	// Client: default route via the DUT, whose MAC it knows for good.
	cli, err := cl.LinkByName(ClientIf)
	if err != nil {
		return err
	}
	if err := cl.RouteAdd(&netlink.Route{LinkIndex: cli.Attrs().Index, Gw: DUTAddr.AsSlice()}); err != nil {
		return fmt.Errorf("client default route: %w", err)
	}
	for _, a := range []netip.Addr{DUTAddr, DUTAddr2} {
		if err := permanentNeigh(cl, cli.Attrs().Index, a, cMAC); err != nil {
			return err
		}
	}
	// DUT: the server side behind permanent entries of a MAC that srv0
	// does not have, and RemoteNet through ServerAddr.
	vs, err := dut.LinkByName(DUTServerIf)
	if err != nil {
		return err
	}
	for _, a := range []netip.Addr{ServerAddr, ServerAddr2} {
		if err := permanentNeigh(dut, vs.Attrs().Index, a, fakeMAC); err != nil {
			return err
		}
	}
	remote := net.IPNet{IP: RemoteNet.Addr().AsSlice(), Mask: net.CIDRMask(RemoteNet.Bits(), 32)}
	if err := dut.RouteAdd(&netlink.Route{LinkIndex: vs.Attrs().Index, Dst: &remote, Gw: ServerAddr.AsSlice()}); err != nil {
		return fmt.Errorf("DUT route to %v: %w", RemoteNet, err)
	}

	// Senders and the server's receiver.
	if err := tp.in(tp.client, func() (err error) {
		tp.clientTx, err = rawSender()
		return err
	}); err != nil {
		return fmt.Errorf("client sender: %w", err)
	}
	if tp.dutTx, err = rawSender(); err != nil {
		return fmt.Errorf("DUT sender: %w", err)
	}
	srv, err := sv.LinkByName(ServerIf)
	if err != nil {
		return err
	}
	if err := tp.in(tp.server, func() (err error) {
		tp.serverRx, err = packetReceiver(srv.Attrs().Index)
		return err
	}); err != nil {
		return fmt.Errorf("server receiver: %w", err)
	}
	return nil
}

func (tp *Topology) close() {
	for _, fd := range append([]int{tp.clientTx, tp.dutTx, tp.serverRx}, values(tp.dutRx)...) {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	for _, ns := range []netns.NsHandle{tp.client, tp.server} {
		if ns.IsOpen() {
			ns.Close()
		}
	}
}

func values(m map[uint8]int) []int {
	var vs []int
	for _, v := range m {
		vs = append(vs, v)
	}
	return vs
}

// In runs f on an OS thread that is in namespace n (Client or Server) for
// the duration of f: sockets that f opens belong to n.
func (tp *Topology) In(n Namespace, f func() error) error {
	if n == Server {
		return tp.in(tp.server, f)
	}
	return tp.in(tp.client, f)
}

func (tp *Topology) in(ns netns.NsHandle, f func() error) error { return RunIn(ns, f) }

// RunIn runs f on a thread in ns. A thread that cannot return to its own
// namespace stays locked and ends with its goroutine.
func RunIn(ns netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// NewNamespace makes a network namespace and leaves the calling thread
// where it was.
func NewNamespace() (netns.NsHandle, error) {
	type res struct {
		ns  netns.NsHandle
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			c <- res{ns: netns.None(), err: err}
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			// Where the thread is now is unknown: it stays locked and
			// ends with this goroutine.
			c <- res{ns: netns.None(), err: err}
			return
		}
		if err := netns.Set(orig); err != nil {
			c <- res{ns: ns, err: err}
			return
		}
		runtime.UnlockOSThread()
		c <- res{ns: ns}
	}()
	r := <-c
	if r.err != nil && r.ns.IsOpen() {
		r.ns.Close()
	}
	return r.ns, r.err
}

// noIPv6 disables IPv6 for links made later in the calling thread's netns
// (a kernel without IPv6 has nothing to disable).
func noIPv6() error {
	for _, f := range []string{"all", "default"} {
		err := os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/disable_ipv6", []byte("1\n"), 0o644)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// setDUTSysctl sets /proc/sys/net/<name> of the DUT to v and puts the old
// value back when t ends.
func setDUTSysctl(t testing.TB, name, v string) error {
	file := "/proc/sys/net/" + name
	old, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, []byte(v+"\n"), 0o644); err != nil {
		return fmt.Errorf("%s=%s: %w", name, v, err)
	}
	t.Cleanup(func() { _ = os.WriteFile(file, old, 0o644) })
	return nil
}

// vethPair makes a veth pair, an in the DUT (h) and bn in peer (ph, ns),
// and returns an's MAC address.
func vethPair(h *netlink.Handle, an string, ph *netlink.Handle, bn string, ns netns.NsHandle) (net.HardwareAddr, error) {
	err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: an}, PeerName: bn,
		PeerNamespace: netlink.NsFd(int(ns))})
	if err != nil {
		return nil, fmt.Errorf("veth %s/%s: %w", an, bn, err)
	}
	if _, err := ph.LinkByName(bn); err != nil {
		return nil, fmt.Errorf("veth peer %s: %w", bn, err)
	}
	l, err := h.LinkByName(an)
	if err != nil {
		return nil, err
	}
	return l.Attrs().HardwareAddr, nil
}

// End is one end of a veth pair: the namespace it goes in (its handle and
// a netlink socket in it), the interface's name and its address (CIDR).
type End struct {
	NS   netns.NsHandle
	NL   *netlink.Handle
	Name string
	Addr string
}

// Veth makes a veth pair from a to b (a.NL makes it), gives each end its
// address and brings both up.
func Veth(a, b End) error {
	err := a.NL.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a.Name}, PeerName: b.Name,
		PeerNamespace: netlink.NsFd(int(b.NS))})
	if err != nil {
		return fmt.Errorf("veth %s/%s: %w", a.Name, b.Name, err)
	}
	for _, e := range []End{a, b} {
		if err := addAddr(e.NL, e.Name, e.Addr); err != nil {
			return err
		}
		l, err := e.NL.LinkByName(e.Name)
		if err != nil {
			return err
		}
		if err := e.NL.LinkSetUp(l); err != nil {
			return fmt.Errorf("%s: up: %w", e.Name, err)
		}
	}
	return nil
}

func delLink(name string) {
	if l, err := netlink.LinkByName(name); err == nil {
		_ = netlink.LinkDel(l)
	}
}

func addAddr(h *netlink.Handle, link, addr string) error {
	l, err := h.LinkByName(link)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		return err
	}
	if err := h.AddrAdd(l, a); err != nil {
		return fmt.Errorf("%s: address %s: %w", link, addr, err)
	}
	return nil
}

func permanentNeigh(h *netlink.Handle, ifindex int, ip netip.Addr, mac net.HardwareAddr) error {
	err := h.NeighAdd(&netlink.Neigh{LinkIndex: ifindex, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
		IP: ip.AsSlice(), HardwareAddr: mac})
	if err != nil {
		return fmt.Errorf("neighbour %v lladdr %v: %w", ip, mac, err)
	}
	return nil
}

// rcvBuf holds a batch of probes in a receiver whatever the batch's size.
const rcvBuf = 4 << 20

func rawSender() (int, error) {
	return unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
}

// rawReceiver is a raw socket of the DUT for protocol proto: it gets a
// copy of each such packet delivered locally, after INPUT.
func rawReceiver(proto uint8) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// packetReceiver is a packet socket for IPv4 on ifindex: it sees each
// packet that arrives there, whatever the host then does with it.
func packetReceiver(ifindex int) (int, error) {
	proto := htons(unix.ETH_P_IP)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
