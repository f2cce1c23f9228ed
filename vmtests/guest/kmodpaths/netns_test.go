//go:build vmguest

package kmodpaths

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
	"github.com/bpfilter/bpfilter/vmtests/guest/nettest"
)

// ns is a network namespace held by this process through h alone, with a
// veth pair to the initial namespace whose end there (peer) goes when the
// namespace does.
type ns struct {
	name   string
	h      netns.NsHandle
	ino    uint64
	cookie uint64 // net_cookie: what the module and the umh know it by
	peer   string
}

// newNS makes a namespace and the veth pair name0 (in it) / name (in the
// initial namespace).
func newNS(t *testing.T, name string) *ns {
	t.Helper()
	h, err := nettest.NewNamespace()
	if err != nil {
		t.Fatalf("new netns %s: %v", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		h.Close()
		t.Fatal(err)
	}
	n := &ns{name: name, h: h, ino: st.Ino, peer: name}
	t.Cleanup(n.close)
	if err := nettest.RunIn(h, func() (err error) { n.cookie, err = gt.NetnsCookie(); return err }); err != nil {
		t.Fatalf("netns %s: its cookie: %v", name, err)
	}
	err = netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "0",
		PeerNamespace: netlink.NsFd(int(h))})
	if err != nil {
		t.Fatalf("veth %s: %v", name, err)
	}
	return n
}

// run runs a command inside the namespace (forked from a thread in it).
func (n *ns) run(t *testing.T, stdin, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := nettest.RunIn(n.h, cmd.Start); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("netns %s: %s %s: %v\n%s", n.name, name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// close drops this process's reference: nothing else holds the namespace.
func (n *ns) close() {
	if n.h.IsOpen() {
		n.h.Close()
		n.h = netns.None()
	}
}

// gone closes the namespace and waits until the kernel has run all of its
// exit methods (bpfilter's among them). Its veth peer goes when its
// devices go, which cleanup_net does before the exit methods of
// subsystems such as bpfilter's; a second namespace, made and closed only
// then, is cleaned up by the same ordered work after the first one is
// done with: its peer going means the first namespace has fully exited.
func (n *ns) gone(t *testing.T) {
	t.Helper()
	n.close()
	waitNoLink(t, n.peer)
	m := newNS(t, n.name+"x")
	m.close()
	waitNoLink(t, m.peer)
}

func waitNoLink(t *testing.T, name string) {
	t.Helper()
	if !gt.Eventually(30*time.Second, func() bool {
		_, err := netlink.LinkByName(name)
		return err != nil
	}) {
		t.Fatalf("veth %s still there 30 s after its namespace's last reference went", name)
	}
}

// progIDs are the BPF programs in the kernel.
func progIDs(t *testing.T) map[ebpf.ProgramID]bool {
	t.Helper()
	ids := map[ebpf.ProgramID]bool{}
	for id, err := ebpf.ProgramGetNextID(0); ; id, err = ebpf.ProgramGetNextID(id) {
		if errors.Is(err, os.ErrNotExist) {
			return ids
		} else if err != nil {
			t.Fatalf("next program id: %v", err)
		}
		ids[id] = true
	}
}

const (
	nsTable = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
		"-A INPUT -s 10.66.0.0/16 -p udp --dport 23 -j ACCEPT\nCOMMIT\n"
	emptyRules = "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"
)

// TestNetnsExitWhileUmhDead: a namespace has rules, the umh is killed,
// and the namespace's last reference goes while no umh runs. Nothing
// hangs: the module drops the namespace's hooks and programs in its exit
// method without waiting for a umh, and queues the exit. The next call
// starts a umh, which is told of the exit (by net_cookie) and says so. A
// new namespace, made meanwhile (it may get the dead one's inode number,
// never its cookie), sees an empty table: the dead namespace's table is
// applied nowhere, and its programs are gone. The initial namespace keeps
// its rules through the restart, and the new umh stays.
func TestNetnsExitWhileUmhDead(t *testing.T) {
	fresh(t)
	load(t, gt.GoodKO)
	if out, err := gt.Restore(smallTable); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	before := progIDs(t)
	n := newNS(t, "kpn")
	n.run(t, nsTable, "iptables-legacy-restore")
	var ofN []ebpf.ProgramID
	for id := range progIDs(t) {
		if !before[id] {
			ofN = append(ofN, id)
		}
	}
	if len(ofN) == 0 {
		t.Fatal("the namespace's rules brought no BPF programs")
	}
	ino, cookie := n.ino, n.cookie
	pid := gt.UmhPid(t)
	killUmh(t, pid)

	k := gt.NewKmsg(t)
	start := time.Now()
	n.gone(t)
	t.Logf("netns inode %d cookie %d (programs %v) exited %v after its last reference went; umh processes now: %+v",
		ino, cookie, ofN, time.Since(start).Round(time.Millisecond), gt.LiveUmhs())

	// The module dropped the dead namespace's programs at its exit,
	// with no umh running.
	var left []ebpf.ProgramID
	if !gt.Eventually(5*time.Second, func() bool {
		now := progIDs(t)
		left = left[:0]
		for _, id := range ofN {
			if now[id] {
				left = append(left, id)
			}
		}
		return len(left) == 0
	}) {
		t.Errorf("programs of the dead namespace still loaded with no umh running: %v", left)
	}

	// A new namespace, before any umh runs again.
	p := newNS(t, "kpp")
	t.Logf("a new namespace has inode %d (the dead one's: %v), cookie %d", p.ino, p.ino == ino, p.cookie)
	if p.cookie == cookie {
		t.Fatalf("the new namespace has the dead one's cookie %d", cookie)
	}
	// Its first call starts a umh, which learns of the exit: trace on
	// for it, within the kernel's burst of trace lines.
	gt.SetTrace(t, true)
	if got := p.run(t, "", "iptables-legacy", "-S"); got != emptyRules {
		t.Errorf("a new namespace after netns %d exited while no umh ran: iptables-legacy -S:\n%s\nwant:\n%s", cookie, got, emptyRules)
	}
	k.Wait(t, regexp.MustCompile(fmt.Sprintf(`^bpfilter_umh: netns %d is gone$`, cookie)), 10*time.Second)
	gt.SetTrace(t, false)
	npid := gt.UmhPid(t)
	if npid == pid {
		t.Fatalf("the umh has the killed one's pid %d", pid)
	}
	if got := gt.MustRun(t, "iptables-legacy", "-S"); got != smallRules {
		t.Errorf("the initial namespace after the restart: iptables-legacy -S:\n%s\nwant:\n%s", got, smallRules)
	}
	if got := p.run(t, "", "iptables-legacy", "-S"); got != emptyRules {
		t.Errorf("the new namespace at the end: iptables-legacy -S:\n%s\nwant:\n%s", got, emptyRules)
	}
	if now := progIDs(t); len(now) > 0 {
		for _, id := range ofN {
			if now[id] {
				t.Errorf("program %d of the dead namespace is loaded again", id)
			}
		}
	}
	if npid2 := gt.UmhPid(t); npid2 != npid {
		t.Errorf("the umh changed from %d to %d", npid, npid2)
	}
	noTrouble(t, k)
	noFallback(t)
}
