//go:build vmguest

package enforce

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// use makes be answer for a fresh filter table, with the extensions the
// tests use loaded and request_module off until t ends: without bpfilter
// loaded, every iptables sockopt call would first fork modprobe to ask
// for it, which makes each ip_tables command 0.3 s slower under TCG.
func use(t *testing.T, be gt.Backend) {
	t.Helper()
	gt.Use(t, be)
	gt.MustRun(t, "modprobe", "-a", "xt_tcpudp", "xt_multiport")
	gt.NoModprobe(t)
}

// burst is the number of datagrams per probe.
const burst = 5

const dropPort23 = "-A INPUT -p udp --dport 23 -j DROP"

// keepFilter puts a clsact qdisc on dev of n and in it a direct-action
// cls_bpf filter of ours (priority 100, before bpfilter's) whose program
// returns TC_ACT_UNSPEC, so that the packet goes on to the next filter:
// what another user of tc may have set up before bpfilter came.
func keepFilter(t *testing.T, n *ns, dev string) string {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "enforcetest_keep",
		Type: ebpf.SchedCLS,
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, -1), // TC_ACT_UNSPEC
			asm.Return(),
		},
		License: "GPL",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close() // the filter holds it
	l, err := n.nl.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0),
			Parent: netlink.HANDLE_CLSACT},
		QdiscType: "clsact",
	}
	if err := n.nl.QdiscAdd(q); err != nil {
		t.Fatalf("%s: clsact on %s: %v", n, dev, err)
	}
	const name = "enforcetest_keep"
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_MIN_INGRESS,
			Handle: 1, Priority: 100, Protocol: unix.ETH_P_ALL},
		Fd: prog.FD(), Name: name, DirectAction: true,
	}
	if err := n.nl.FilterAdd(f); err != nil {
		t.Fatalf("%s: filter on %s: %v", n, dev, err)
	}
	return dev + " ingress prio 100 " + name
}

// TestRmmodLeavesNothing: with rules in the VM's initial namespace and in
// two others, bpfilter has programs and maps in the kernel and filters on
// every interface; after rmmod the kernel's BPF objects are exactly those
// of before insmod, and the interfaces have exactly the qdiscs and filters
// of before: a clsact qdisc and a filter that were there before bpfilter
// stay.
func TestRmmodLeavesNothing(t *testing.T) {
	if gt.Loaded("bpfilter") {
		gt.MustRun(t, "rmmod", "bpfilter")
	}
	gt.NoUmh(t)
	in := initNS(t)
	a, b := newNS(t, "a"), newNS(t, "b")
	veth(t, in, "ia0", "10.91.0.1/24", a, "ai0", "10.91.0.2/24")
	veth(t, a, "ab0", "10.92.0.1/24", b, "ba0", "10.92.0.2/24")
	keep := keepFilter(t, a, "ab0")
	spaces := []*ns{in, a, b}
	type tcs struct{ filters, clsacts []string }
	tcBefore := map[*ns]tcs{}
	for _, n := range spaces {
		f, q := n.tcState(t)
		tcBefore[n] = tcs{f, q}
	}
	if got := tcBefore[a]; !slices.Equal(got.filters, []string{keep}) || !slices.Equal(got.clsacts, []string{"ab0"}) {
		t.Fatalf("%s before bpfilter: filters %v, clsacts %v; want our filter and qdisc on ab0", a, got.filters, got.clsacts)
	}
	before := stableObjects(t)
	t.Logf("before insmod: %d programs, %d maps, %d BTF objects, %d links",
		before.count("prog"), before.count("map"), before.count("btf"), before.count("link"))

	use(t, gt.Bpfilter)
	gt.MustRun(t, "iptables-legacy", strings.Fields(dropPort23)...)
	a.restore(t, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:web - [0:0]\n"+
		"-A INPUT -p tcp -j web\n-A web -p tcp --dport 80 -j ACCEPT\n-A web -j DROP\nCOMMIT\n")
	b.ipt(t, "-A", "OUTPUT", "-p", "udp", "--dport", "25", "-j", "DROP")
	gt.Ensure(t, gt.Bpfilter)

	during := bpfObjects(t)
	added := during.minus(before)
	t.Logf("bpfilter with rules in 3 namespaces added %d BPF objects:\n%s", len(added), strings.Join(added, "\n"))
	nprog, nmap := 0, 0
	for _, o := range added {
		switch {
		case strings.HasPrefix(o, "prog "):
			nprog++
		case strings.HasPrefix(o, "map "):
			nmap++
		}
	}
	if nprog == 0 || nmap == 0 {
		t.Errorf("with rules in 3 namespaces, bpfilter added %d programs and %d maps to the kernel: it enforces nothing", nprog, nmap)
	}
	for _, n := range spaces {
		filters, clsacts := n.tcState(t)
		t.Logf("%s with bpfilter: clsact on %v; filters:\n%s", n, clsacts, strings.Join(filters, "\n"))
		for _, l := range n.links(t) {
			name := l.Attrs().Name
			if !slices.Contains(clsacts, name) {
				t.Errorf("%s: no clsact qdisc on %s with bpfilter's rules in force", n, name)
			}
			for _, dir := range []string{"ingress", "egress"} {
				if !slices.ContainsFunc(filters, func(f string) bool {
					return strings.HasPrefix(f, name+" "+dir+" ") && strings.Contains(f, " bpfilter_")
				}) {
					t.Errorf("%s: no bpfilter filter at %s of %s", n, dir, name)
				}
			}
		}
		if n == a && !slices.Contains(filters, keep) {
			t.Errorf("%s: bpfilter removed the filter that was there before it: %v", n, filters)
		}
	}

	start := time.Now()
	gt.MustRun(t, "rmmod", "bpfilter")
	gt.NoUmh(t)
	var after objects
	if !gt.Eventually(10*time.Second, func() bool {
		after = bpfObjects(t)
		return len(after.minus(before)) == 0 && len(before.minus(after)) == 0
	}) {
		t.Errorf("BPF objects left in the kernel after rmmod:\n%s", strings.Join(after.minus(before), "\n"))
		if gone := before.minus(after); len(gone) > 0 {
			t.Errorf("BPF objects of before insmod gone after rmmod:\n%s", strings.Join(gone, "\n"))
		}
	} else {
		t.Logf("after rmmod the BPF objects are those of before insmod (%d) within %v", len(after), time.Since(start).Round(time.Millisecond))
	}
	for _, n := range spaces {
		filters, clsacts := n.tcState(t)
		if want := tcBefore[n]; !slices.Equal(filters, want.filters) || !slices.Equal(clsacts, want.clsacts) {
			t.Errorf("%s after rmmod: filters %v and clsact qdiscs on %v; want those of before: filters %v, clsacts on %v",
				n, filters, clsacts, want.filters, want.clsacts)
		}
	}
	// Our own filter still runs: it passes packets on (to nothing now).
	s, l := b.dial(t, "10.92.0.1:24"), a.listen(t, "10.92.0.1:24")
	expectProbe(t, "b to a through the filter that was there before", burst, []int{burst}, path{s, l})
}

// umhPid is the pid of the one running umh.
func umhPid(t testing.TB) int {
	t.Helper()
	var ps []gt.Proc
	for _, p := range gt.Procs("bpfilter_umh") {
		if p.State != "Z" {
			ps = append(ps, p)
		}
	}
	if len(ps) != 1 {
		t.Fatalf("want one running bpfilter_umh, have %+v", ps)
	}
	return ps[0].Pid
}

// TestUmhKilled: with -A INPUT -p udp --dport 23 -j DROP in a namespace,
// SIGKILL of the umh changes nothing for packets: port 23 is still
// dropped, port 24 passes, before any iptables call restarts the umh.
// Afterwards the restarted umh shows the rule and counters that include
// the datagrams of before and after the kill: iptables-legacy -S and
// -L -v -x -n print what they print with ip_tables for the same traffic
// (without a kill: ip_tables has no umh).
func TestUmhKilled(t *testing.T) {
	type result struct{ s, l string }
	res := map[gt.Backend]result{}
	for _, be := range []gt.Backend{gt.IPTables, gt.Bpfilter} {
		t.Run(be.String(), func(t *testing.T) {
			use(t, be)
			a, b := newNS(t, "a"), newNS(t, "b")
			veth(t, a, "ab0", "10.93.0.1/24", b, "ba0", "10.93.0.2/24")
			l23, l24 := b.listen(t, "10.93.0.2:23"), b.listen(t, "10.93.0.2:24")
			p23, p24 := path{a.dial(t, "10.93.0.2:23"), l23}, path{a.dial(t, "10.93.0.2:24"), l24}
			b.ipt(t, strings.Fields(dropPort23)...)
			expectProbe(t, "before the kill", burst, []int{0, burst}, p23, p24)

			if be == gt.Bpfilter {
				pid := umhPid(t)
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				if !gt.Eventually(5*time.Second, func() bool { _, ok := gt.ReadProc(pid); return !ok }) {
					t.Fatalf("killed umh %d did not go away", pid)
				}
				t.Logf("umh %d killed; umh processes now: %+v", pid, gt.Procs("bpfilter_umh"))
				expectProbe(t, "after the kill, before any iptables call", burst, []int{0, burst}, p23, p24)
				defer func() {
					if npid := umhPid(t); npid == pid {
						t.Errorf("the umh after the kill has the killed one's pid %d", pid)
					} else {
						t.Logf("restarted umh: pid %d", npid)
					}
				}()
			} else {
				expectProbe(t, "second burst", burst, []int{0, burst}, p23, p24)
			}

			s := b.ipt(t, "-t", "filter", "-S")
			l := b.ipt(t, "-t", "filter", "-L", "-v", "-x", "-n")
			t.Logf("iptables-legacy -t filter -S:\n%s-L -v -x -n:\n%s", s, l)
			if want := "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-A INPUT -p udp -m udp --dport 23 -j DROP\n"; s != want {
				t.Errorf("iptables-legacy -S:\n%s\nwant:\n%s", s, want)
			}
			lst := parseListing(t, l)
			wantCounter(t, "INPUT rule 1 (--dport 23 DROP)", lst.rule(t, "INPUT", 0), 2*burst)
			wantCounter(t, "INPUT policy", lst.policy["INPUT"], 2*burst)
			gt.Ensure(t, be)
			res[be] = result{s, l}
		})
	}
	if ipt, bpf := res[gt.IPTables], res[gt.Bpfilter]; ipt.s == "" || bpf.s == "" {
		t.Fatal("a backend's run did not finish")
	} else if ipt != bpf {
		t.Errorf("bpfilter after the kill prints:\n%s%s\nip_tables:\n%s%s", bpf.s, bpf.l, ipt.s, ipt.l)
	}
}

// TestNamespaceExit: namespaces c and d, joined by a veth pair, each with
// rules. When the last reference to c goes (its fd, its netlink and UDP
// sockets: as `ip netns del` of a namespace nothing else holds), the
// BPF objects that c's rules brought go, d's stay, and the veth peer in d
// goes with c: bpfilter did not keep c alive.
func TestNamespaceExit(t *testing.T) {
	use(t, gt.Bpfilter)
	c, d := newNS(t, "c"), newNS(t, "d")
	veth(t, c, "cd0", "10.94.0.1/24", d, "dc0", "10.94.0.2/24")
	base := stableObjects(t)
	d.ipt(t, strings.Fields(dropPort23)...)
	mid := stableObjects(t)
	c.ipt(t, strings.Fields(dropPort23)...)
	// c enforces its rule.
	c23, c24 := c.listen(t, "10.94.0.1:23"), c.listen(t, "10.94.0.1:24")
	expectProbe(t, "d to c", burst, []int{0, burst}, path{d.dial(t, "10.94.0.1:23"), c23}, path{d.dial(t, "10.94.0.1:24"), c24})
	after := bpfObjects(t)
	ofD, ofC := mid.minus(base), after.minus(mid)
	t.Logf("BPF objects of d's rules:\n%s\nof c's rules:\n%s", strings.Join(ofD, "\n"), strings.Join(ofC, "\n"))
	if len(ofC) == 0 || len(ofD) == 0 {
		t.Fatalf("rules in c added %d BPF objects, in d %d: want some in each", len(ofC), len(ofD))
	}
	pid := umhPid(t)

	ino := c.ino
	c.close()
	start := time.Now()
	var left []string
	peer := true
	if !gt.Eventually(30*time.Second, func() bool {
		now := bpfObjects(t)
		left = left[:0]
		for _, o := range ofC {
			if _, ok := now[idOf(o)]; ok {
				left = append(left, o)
			}
		}
		peer = d.hasLink(t, "dc0")
		return len(left) == 0 && !peer
	}) {
		t.Errorf("30 s after the last reference to netns %d closed: c's BPF objects left: %v; veth peer dc0 still in d: %v",
			ino, left, peer)
	} else {
		t.Logf("netns %d: its BPF objects and the veth peer went within %v", ino, time.Since(start).Round(time.Millisecond))
	}
	now := bpfObjects(t)
	for _, o := range ofD {
		if _, ok := now[idOf(o)]; !ok {
			t.Errorf("d's BPF object %s went with c", o)
		}
	}
	if got := d.ipt(t, "-S", "INPUT"); got != "-P INPUT ACCEPT\n-A INPUT -p udp -m udp --dport 23 -j DROP\n" {
		t.Errorf("d's INPUT after c went:\n%s", got)
	}
	if npid := umhPid(t); npid != pid {
		t.Errorf("the umh changed from %d to %d while c went", pid, npid)
	}
}

// idOf is the key of a line of objects.minus ("prog 12 SchedCLS ..." -> "prog 12").
func idOf(o string) string {
	f := strings.SplitN(o, " ", 3)
	return fmt.Sprintf("%s %s", f[0], f[1])
}
