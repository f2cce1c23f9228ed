// Command bpfilter-probe sends real packets for `make run`, in the guest:
//
//	bpfilter-probe setup        make network namespace "peer" (bound at
//	                            /run/netns/peer) joined to this one by a veth
//	                            pair: here 10.99.0.1 on veth0, there 10.99.0.2
//	bpfilter-probe udp PORT N   send N datagrams from peer to 10.99.0.1:PORT
//	                            and say how many arrived
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	peerPath = "/run/netns/peer"
	hostAddr = "10.99.0.1"
	peerAddr = "10.99.0.2"
)

func main() {
	var err error
	switch {
	case len(os.Args) == 2 && os.Args[1] == "setup":
		err = setup()
	case len(os.Args) == 4 && os.Args[1] == "udp":
		err = udp(os.Args[2], os.Args[3])
	default:
		err = errors.New("usage: bpfilter-probe setup | udp PORT N")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bpfilter-probe:", err)
		os.Exit(1)
	}
}

func addrUp(h *netlink.Handle, name, cidr string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	if err := h.AddrAdd(l, a); err != nil {
		return err
	}
	return h.LinkSetUp(l)
}

func setup() error {
	runtime.LockOSThread()
	host, err := netns.Get()
	if err != nil {
		return err
	}
	peer, err := netns.New() // and enters it
	if err != nil {
		return err
	}
	defer netns.Set(host)
	if err := os.MkdirAll("/run/netns", 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(peerPath, nil, 0o644); err != nil {
		return err
	}
	if err := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), peerPath, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", peerPath, err)
	}
	hh, err := netlink.NewHandleAt(host, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	ph, err := netlink.NewHandleAt(peer, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0", Namespace: netlink.NsFd(host)}, PeerName: "veth1"}
	if err := ph.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	if err := addrUp(hh, "veth0", hostAddr+"/24"); err != nil {
		return err
	}
	if err := addrUp(ph, "veth1", peerAddr+"/24"); err != nil {
		return err
	}
	lo, err := ph.LinkByName("lo")
	if err != nil {
		return err
	}
	fmt.Printf("netns peer (%s) <-> veth1 %s ... veth0 %s (here)\n", peerPath, peerAddr, hostAddr)
	return ph.LinkSetUp(lo)
}

func udp(portArg, nArg string) error {
	port, err := strconv.Atoi(portArg)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(nArg)
	if err != nil {
		return err
	}
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(hostAddr), Port: port})
	if err != nil {
		return err
	}
	defer srv.Close()

	runtime.LockOSThread()
	host, err := netns.Get()
	if err != nil {
		return err
	}
	peer, err := netns.GetFromPath(peerPath)
	if err != nil {
		return fmt.Errorf("%s (run setup first): %w", peerPath, err)
	}
	if err := netns.Set(peer); err != nil {
		return err
	}
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(hostAddr), Port: port})
	netns.Set(host)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		if _, err := c.Write(make([]byte, 100)); err != nil {
			return err
		}
	}
	got := 0
	buf := make([]byte, 2048)
	for got < n {
		srv.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := srv.ReadFromUDP(buf); err != nil {
			break
		}
		got++
	}
	fmt.Printf("udp %s:%d from peer: %d of %d datagrams arrived\n", hostAddr, port, got, n)
	return nil
}
