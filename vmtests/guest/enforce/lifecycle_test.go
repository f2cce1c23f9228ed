//go:build vmguest

package enforce

import (
	"fmt"
	"math/rand"
	"strings"
	"syscall"
	"testing"
	"time"

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

// drop23accept24 drops UDP to port 23 and accepts (and counts) UDP to 24
// in INPUT: every datagram of a test is counted by a rule of its own.
const drop23accept24 = tableHead + dropPort23 + "\n-A INPUT -p udp --dport 24 -j ACCEPT\nCOMMIT\n"

// TestRmmodLeavesNothing: with rules in the VM's initial namespace and in
// two others, bpfilter has programs and maps in the kernel and drops
// packets; after rmmod the kernel's BPF objects are exactly those of
// before insmod, no umh is left, and the packets that were dropped pass.
// rmmod does so, and quickly, whatever the umh does: running, stopped
// (SIGSTOP: a module that asked it anything before dropping its hooks and
// programs would wait), or dead (no umh to ask).
func TestRmmodLeavesNothing(t *testing.T) {
	for i, umh := range []string{"running", "stopped", "dead"} {
		t.Run("umh "+umh, func(t *testing.T) {
			if gt.Loaded("bpfilter") {
				gt.MustRun(t, "rmmod", "bpfilter")
			}
			gt.NoUmh(t)
			in := initNS(t)
			a, b := newNS(t, "a"), newNS(t, "b")
			// The initial namespace's end of the last subtest's pair may
			// not be gone yet (namespaces go asynchronously): a name and
			// subnet for each.
			ia, ai := fmt.Sprintf("ia%d", i), fmt.Sprintf("ai%d", i)
			inAddr, bAddr := fmt.Sprintf("10.91.%d.1", i), fmt.Sprintf("10.92.%d.2", i)
			veth(t, in, ia, inAddr+"/24", a, ai, fmt.Sprintf("10.91.%d.2/24", i))
			veth(t, a, "ab0", fmt.Sprintf("10.92.%d.1/24", i), b, "ba0", bAddr+"/24")
			// a to the initial namespace, a to b: port 23 is dropped at
			// both ends, 24 passes.
			paths := [][2]path{
				{{a.dial(t, inAddr+":23"), in.listen(t, inAddr+":23")}, {a.dial(t, inAddr+":24"), in.listen(t, inAddr+":24")}},
				{{a.dial(t, bAddr+":23"), b.listen(t, bAddr+":23")}, {a.dial(t, bAddr+":24"), b.listen(t, bAddr+":24")}},
			}
			before := stableObjects(t)
			t.Logf("before insmod: %d programs, %d maps, %d BTF objects, %d links",
				before.count("prog"), before.count("map"), before.count("btf"), before.count("link"))

			use(t, gt.Bpfilter)
			gt.MustRun(t, "iptables-legacy", strings.Fields(dropPort23)...)
			a.restore(t, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:web - [0:0]\n"+
				"-A INPUT -p tcp -j web\n-A web -p tcp --dport 80 -j ACCEPT\n-A web -j DROP\nCOMMIT\n")
			b.restore(t, drop23accept24)
			gt.Ensure(t, gt.Bpfilter)
			for _, p := range paths {
				expectProbe(t, "with bpfilter: "+p[0].l.addr, burst, []int{0, burst}, p[0], p[1])
			}

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

			pid := gt.UmhPid(t)
			switch umh {
			case "stopped":
				stopUmh(t, pid)
			case "dead":
				killUmh(t, pid)
				if ps := gt.LiveUmhs(); len(ps) != 0 {
					t.Fatalf("a umh runs after the kill, before rmmod: %+v", ps)
				}
			}
			k := gt.NewKmsg(t)
			start := time.Now()
			gt.MustRun(t, "rmmod", "bpfilter")
			took := time.Since(start)
			if took > 10*time.Second {
				t.Errorf("rmmod with the umh %s took %v", umh, took.Round(time.Millisecond))
			}
			if umh == "dead" {
				if started := k.Grep(gt.LoadedRe); len(started) > 0 {
					t.Logf("rmmod started a umh although it needs none: %q", started)
				}
			}
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
				t.Logf("rmmod took %v; the BPF objects are those of before insmod (%d) within %v of it",
					took.Round(time.Millisecond), len(after), time.Since(start).Round(time.Millisecond))
			}
			for _, p := range paths {
				expectProbe(t, "after rmmod: "+p[0].l.addr, burst, []int{burst, burst}, p[0], p[1])
			}
		})
	}
}

// TestUmhKilled: with port 23 dropped and 24 accepted by rules of their
// own, a stream of datagrams to both runs across SIGKILL of the umh and on
// while no umh runs: not one to 23 arrives, every one to 24 does. The
// next iptables call starts a new umh, which shows the same rules, with
// counters that count every datagram, those of the time without a umh
// included.
func TestUmhKilled(t *testing.T) {
	use(t, gt.Bpfilter)
	a, b := newNS(t, "a"), newNS(t, "b")
	veth(t, a, "ab0", "10.93.0.1/24", b, "ba0", "10.93.0.2/24")
	l23, l24 := b.listen(t, "10.93.0.2:23"), b.listen(t, "10.93.0.2:24")
	p23, p24 := path{a.dial(t, "10.93.0.2:23"), l23}, path{a.dial(t, "10.93.0.2:24"), l24}
	b.restore(t, drop23accept24)
	wantS := b.ipt(t, "-S")
	expectProbe(t, "before the kill", burst, []int{0, burst}, p23, p24)

	pid := gt.UmhPid(t)
	st := startStream(time.Millisecond, p23.s, p24.s)
	time.Sleep(200 * time.Millisecond)
	killUmh(t, pid)
	atKill := st.sent.Load()
	time.Sleep(300 * time.Millisecond)
	without := st.sent.Load() - atKill
	live := gt.LiveUmhs()
	n := st.end(t)
	if len(live) != 0 {
		t.Errorf("a umh ran during the stream after the kill: %+v", live)
	}
	if without < 20 {
		t.Errorf("only %d datagrams went to each port while no umh ran", without)
	}
	l24.waitCount(st.tag, n, 5*time.Second)
	time.Sleep(grace)
	if got := l23.count(st.tag); got != 0 {
		t.Errorf("%d of %d datagrams to port 23 arrived across the kill", got, n)
	}
	if got := l24.count(st.tag); got != n {
		t.Errorf("%d of %d datagrams to port 24 arrived across the kill", got, n)
	}
	t.Logf("stream of %d datagrams to each port, %d of them after the umh was gone", n, without)
	expectProbe(t, "after the kill, before any iptables call", burst, []int{0, burst}, p23, p24)
	if live := gt.LiveUmhs(); len(live) != 0 {
		t.Errorf("a umh runs before any iptables call: %+v", live)
	}

	s := b.ipt(t, "-S")
	l := b.ipt(t, "-L", "-v", "-x", "-n")
	t.Logf("iptables-legacy -S:\n%s-L -v -x -n:\n%s", s, l)
	if s != wantS {
		t.Errorf("iptables-legacy -S after the restart:\n%s\nwant, as before the kill:\n%s", s, wantS)
	}
	lst := parseListing(t, l)
	all := uint64(2*burst + n)
	wantCounter(t, "INPUT rule 1 (--dport 23 DROP)", lst.rule(t, "INPUT", 0), all)
	wantCounter(t, "INPUT rule 2 (--dport 24 ACCEPT)", lst.rule(t, "INPUT", 1), all)
	wantCounter(t, "INPUT policy", lst.policy["INPUT"], 0)
	if npid := gt.UmhPid(t); npid == pid {
		t.Errorf("the umh after the kill has the killed one's pid %d", pid)
	} else {
		t.Logf("restarted umh: pid %d", npid)
	}
	gt.Ensure(t, gt.Bpfilter)
}

// fillers are n rules of filler in INPUT.
func fillers(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintln(&b, filler("INPUT", i, 0))
	}
	return b.String()
}

// replaceTimes runs iptables-legacy-restore of input in n and returns how
// long it ran and how long its first setsockopt (the SET_REPLACE) took,
// as seen by polling /proc every millisecond.
func replaceTimes(t *testing.T, n *ns, input string) (total, replace time.Duration) {
	t.Helper()
	start := time.Now()
	r := n.start(t, input, "iptables-legacy-restore")
	pid := r.cmd.Process.Pid
	var in time.Time
	for {
		// On a CPU, the task's syscall cannot be told: only a syscall
		// other than setsockopt ends the SET_REPLACE.
		if nr, ok := syscallOf(pid); ok && nr == unix.SYS_SETSOCKOPT {
			if in.IsZero() {
				in = time.Now()
			}
		} else if ok && !in.IsZero() {
			replace = time.Since(in)
			break
		}
		if exited(pid) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if out, err := r.wait(); err != nil {
		t.Fatalf("iptables-legacy-restore: %v: %s", err, out)
	}
	return time.Since(start), replace
}

// TestKillMidReplace: the umh is SIGKILLed at a random moment of the
// SET_REPLACE of an iptables-legacy-restore of a 3,000-rule table that
// reverses the verdicts of the 2-rule table in force (port 23 accepted,
// 24 dropped), 6 times. Each time, the next call's iptables-legacy -S
// shows the old table or the new one, in whole; traffic shows the same
// one in force; -L -v counts the probe on the rules that judged it; and a
// restore that reported success left the new table.
func TestKillMidReplace(t *testing.T) {
	const rounds = 6
	use(t, gt.Bpfilter)
	a, b := newNS(t, "a"), newNS(t, "b")
	veth(t, a, "ab0", "10.99.0.1/24", b, "ba0", "10.99.0.2/24")
	l23, l24 := b.listen(t, "10.99.0.2:23"), b.listen(t, "10.99.0.2:24")
	p23, p24 := path{a.dial(t, "10.99.0.2:23"), l23}, path{a.dial(t, "10.99.0.2:24"), l24}
	oldT := drop23accept24
	newT := tableHead + fillers(3000) + "-A INPUT -p udp --dport 24 -j DROP\n-A INPUT -p udp --dport 23 -j ACCEPT\nCOMMIT\n"

	b.restore(t, oldT)
	oldS := b.ipt(t, "-S")
	// /proc shows the call only while the caller is off the CPU, so a
	// poll can catch just the end of it (seen once on the debug kernel:
	// 0 s of a replace that takes over a second there): the longest of
	// up to three measurements.
	var took, replace time.Duration
	for try := 0; try < 3 && replace < 20*time.Millisecond; try++ {
		if try > 0 {
			b.restore(t, oldT)
		}
		var r time.Duration
		took, r = replaceTimes(t, b, newT)
		replace = max(replace, r)
		t.Logf("the 3,000-rule restore takes %v, its SET_REPLACE %v", took.Round(time.Millisecond), r.Round(time.Millisecond))
	}
	newS := b.ipt(t, "-S")
	if replace < 20*time.Millisecond {
		t.Fatalf("the SET_REPLACE took %v: too short to kill the umh inside it", replace)
	}

	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)
	outcomes := map[string]int{}
	for i := 0; i < rounds; i++ {
		b.restore(t, oldT)
		pid := gt.UmhPid(t)
		delay := time.Duration(rng.Int63n(int64(replace)))
		r := b.start(t, newT, "iptables-legacy-restore")
		rpid := r.cmd.Process.Pid
		if !gt.Eventually(30*time.Second, func() bool { return inSetsockopt(rpid) || exited(rpid) }) || exited(rpid) {
			r.wait()
			t.Fatalf("round %d: iptables-legacy-restore never called setsockopt", i)
		}
		time.Sleep(delay)
		inCall := inSetsockopt(rpid)
		killUmh(t, pid)
		out, err := r.wait()
		s := b.ipt(t, "-S")
		var which string
		switch s {
		case oldS:
			which = "old"
			expectProbe(t, fmt.Sprintf("round %d, old table", i), burst, []int{0, burst}, p23, p24)
		case newS:
			which = "new"
			expectProbe(t, fmt.Sprintf("round %d, new table", i), burst, []int{0, burst}, p24, p23)
		default:
			t.Fatalf("round %d (kill %v into the SET_REPLACE): iptables-legacy -S shows neither table: %s against the old, %s against the new",
				i, delay.Round(time.Millisecond), firstDiff(s, oldS), firstDiff(s, newS))
		}
		restored := "it succeeded"
		if err != nil {
			restored = fmt.Sprintf("it failed: %v: %s", err, strings.TrimSpace(out))
		} else if which == "old" {
			t.Errorf("round %d: iptables-legacy-restore succeeded, yet the old table is in force", i)
		}
		lst := parseListing(t, b.ipt(t, "-L", "-v", "-x", "-n"))
		wantCounter(t, fmt.Sprintf("round %d (%s): the DROP rule", i, which), lst.rule(t, "INPUT", -2), burst)
		wantCounter(t, fmt.Sprintf("round %d (%s): the ACCEPT rule", i, which), lst.rule(t, "INPUT", -1), burst)
		t.Logf("round %d: umh %d killed %v into the SET_REPLACE (still in it: %v); %s; the %s table is in force", i, pid,
			delay.Round(time.Millisecond), inCall, restored, which)
		outcomes[which]++
	}
	t.Logf("outcomes: %v", outcomes)
	gt.Ensure(t, gt.Bpfilter)
}

// TestNamespaceExit: namespaces c and d, joined by a veth pair, each with
// rules. With the umh stopped (SIGSTOP), the last reference to c goes
// (its fd, its netlink and UDP sockets: as `ip netns del` of a namespace
// nothing else holds): c's programs go and the veth peer in d goes with
// c, the umh still stopped: neither the module nor the namespace's exit
// waited for it. Once continued, the same umh answers, d's rules and
// objects are intact, and the rest of c's objects (the maps the umh
// held) go once it has been told.
func TestNamespaceExit(t *testing.T) {
	use(t, gt.Bpfilter)
	c, d := newNS(t, "c"), newNS(t, "d")
	veth(t, c, "cd0", "10.94.0.1/24", d, "dc0", "10.94.0.2/24")
	base := stableObjects(t)
	d.ipt(t, strings.Fields(dropPort23)...)
	mid := stableObjects(t)
	c.ipt(t, strings.Fields(dropPort23)...)
	c23, c24 := c.listen(t, "10.94.0.1:23"), c.listen(t, "10.94.0.1:24")
	expectProbe(t, "d to c", burst, []int{0, burst}, path{d.dial(t, "10.94.0.1:23"), c23}, path{d.dial(t, "10.94.0.1:24"), c24})
	after := stableObjects(t)
	ofD, ofC := mid.minus(base), after.minus(mid)
	t.Logf("BPF objects of d's rules:\n%s\nof c's rules:\n%s", strings.Join(ofD, "\n"), strings.Join(ofC, "\n"))
	var progsOfC []string
	for _, o := range ofC {
		if strings.HasPrefix(o, "prog ") {
			progsOfC = append(progsOfC, o)
		}
	}
	if len(progsOfC) == 0 || len(ofD) == 0 {
		t.Fatalf("rules in c added %d programs, in d %d BPF objects: want some in each", len(progsOfC), len(ofD))
	}
	pid := gt.UmhPid(t)
	stopUmh(t, pid)

	c.close()
	start := time.Now()
	left := func(of []string) []string {
		now := bpfObjects(t)
		var l []string
		for _, o := range of {
			if _, ok := now[idOf(o)]; ok {
				l = append(l, o)
			}
		}
		return l
	}
	var progsLeft []string
	peer := true
	if !gt.Eventually(10*time.Second, func() bool {
		progsLeft = left(progsOfC)
		peer = d.hasLink(t, "dc0")
		return len(progsLeft) == 0 && !peer
	}) {
		t.Errorf("10 s after the last reference to c closed, with the umh stopped: c's programs left: %v; veth peer dc0 still in d: %v",
			progsLeft, peer)
	} else {
		t.Logf("with the umh stopped, c's programs and the veth peer went within %v; of c's objects still there: %v",
			time.Since(start).Round(time.Millisecond), left(ofC))
	}
	if !stopped(pid) {
		t.Fatalf("umh %d is no longer stopped: %+v", pid, gt.Procs("bpfilter_umh"))
	}

	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if got := d.ipt(t, "-S", "INPUT"); got != "-P INPUT ACCEPT\n-A INPUT -p udp -m udp --dport 23 -j DROP\n" {
		t.Errorf("d's INPUT after c went:\n%s", got)
	}
	var rest []string
	if !gt.Eventually(10*time.Second, func() bool { rest = left(ofC); return len(rest) == 0 }) {
		t.Errorf("c's BPF objects left 10 s after the umh was continued and called: %v", rest)
	}
	now := bpfObjects(t)
	for _, o := range ofD {
		if _, ok := now[idOf(o)]; !ok {
			t.Errorf("d's BPF object %s went with c", o)
		}
	}
	d23, d24 := d.listen(t, "127.0.0.1:23"), d.listen(t, "127.0.0.1:24")
	expectProbe(t, "d over lo", burst, []int{0, burst}, path{d.dial(t, "127.0.0.1:23"), d23}, path{d.dial(t, "127.0.0.1:24"), d24})
	if npid := gt.UmhPid(t); npid != pid {
		t.Errorf("the umh changed from %d to %d while c went", pid, npid)
	}
}

// idOf is the key of a line of objects.minus ("prog 12 SchedCLS ..." -> "prog 12").
func idOf(o string) string {
	f := strings.SplitN(o, " ", 3)
	return fmt.Sprintf("%s %s", f[0], f[1])
}
