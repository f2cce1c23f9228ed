//go:build vmguest

package traffic

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
	nt "github.com/bpfilter/bpfilter/vmtests/guest/nettest"
	"golang.org/x/sys/unix"
)

// The differential tests of this file's kind: a topology of namespaces
// around the DUT (nettest.Host), then for each backend in turn the same
// cases (a filter table, maybe nat and mangle tables that ip_tables
// serves under both, and real UDP datagrams between real sockets), then a
// comparison: every flow's fate and iptables-legacy's listing and save of
// the filter table (with counters) must be the same byte for byte, and
// the reference run must show what the case says ip_tables does.

// flow is n UDP datagrams of payload bytes from a socket of from (bound
// to src, if valid) to dst; a socket of to listening at at (dst if zero)
// receives them. Each datagram carries the flow's tag, so that flows may
// share a listener, and NAT cannot confuse them. send, if set, replaces
// the sender's socket (from and src are ignored): it sends n packets
// carrying payload itself.
type flow struct {
	name     string
	from, to *nt.Host
	src      netip.Addr
	dst, at  netip.AddrPort
	n        int
	payload  int
	send     func(payload []byte) error
}

// flowFate is what became of a flow.
type flowFate struct {
	arrived, sent, n int
	errs             []string            // failed sends: errno names
	srcs             map[netip.Addr]bool // sources the receiver saw
}

func (f flowFate) String() string {
	s := fmt.Sprintf("%d/%d arrived", f.arrived, f.n)
	if f.arrived > 0 {
		var srcs []string
		for a := range f.srcs {
			srcs = append(srcs, a.String())
		}
		slices.Sort(srcs)
		s += " from " + strings.Join(srcs, ",")
	}
	if len(f.errs) > 0 {
		s += fmt.Sprintf(", %d sends failed: %s", len(f.errs), strings.Join(slices.Compact(f.errs), ","))
	}
	return s
}

func errnoName(err error) string {
	var e unix.Errno
	if errors.As(err, &e) {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
	}
	return err.Error()
}

type listenKey struct {
	h  *nt.Host
	at netip.AddrPort
}

// sendFlows sends every flow, in order, then waits up to nettest.Settle
// for what has not arrived, and returns each flow's fate.
func sendFlows(t *testing.T, flows []flow) []flowFate {
	t.Helper()
	fates := make([]flowFate, len(flows))
	listeners := map[listenKey]*net.UDPConn{}
	defer func() {
		for _, c := range listeners {
			c.Close()
		}
	}()
	want := 0
	for i := range flows {
		f := &flows[i]
		if f.n == 0 {
			f.n = 2
		}
		if f.payload < 16 {
			f.payload = 64
		}
		if !f.at.IsValid() {
			f.at = f.dst
		}
		fates[i] = flowFate{n: f.n, srcs: map[netip.Addr]bool{}}
		want += f.n
		k := listenKey{f.to, f.at}
		if listeners[k] != nil {
			continue
		}
		err := f.to.Do(func() (err error) {
			listeners[k], err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(f.at))
			return err
		})
		if err != nil {
			t.Fatalf("flow %s: listen in %s at %v: %v", f.name, f.to, f.at, err)
		}
		if err := listeners[k].SetReadBuffer(1 << 20); err != nil {
			t.Fatal(err)
		}
	}

	for i, f := range flows {
		msg := make([]byte, f.payload)
		for j := range msg {
			msg[j] = byte(j)
		}
		copy(msg, fmt.Sprintf("flow %04d", i))
		if f.send != nil {
			for j := 0; j < f.n; j++ {
				if err := f.send(msg); err != nil {
					fates[i].errs = append(fates[i].errs, errnoName(err))
				} else {
					fates[i].sent++
				}
			}
			continue
		}
		var c *net.UDPConn
		err := f.from.Do(func() (err error) {
			var local netip.AddrPort
			if f.src.IsValid() {
				local = netip.AddrPortFrom(f.src, 0)
			}
			c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(local))
			return err
		})
		if err != nil {
			t.Fatalf("flow %s: sender in %s: %v", f.name, f.from, err)
		}
		for j := 0; j < f.n; j++ {
			if _, err := c.WriteToUDPAddrPort(msg, f.dst); err != nil {
				fates[i].errs = append(fates[i].errs, errnoName(err))
			} else {
				fates[i].sent++
			}
		}
		c.Close()
	}

	// Collect until everything sent has arrived or Settle has passed.
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	got := 0
	deadline := time.Now().Add(nt.Settle)
	for k, c := range listeners {
		wg.Add(1)
		go func(k listenKey, c *net.UDPConn) {
			defer wg.Done()
			buf := make([]byte, 1<<16)
			for {
				mu.Lock()
				done := got >= want
				mu.Unlock()
				if done {
					return
				}
				d := time.Now().Add(20 * time.Millisecond)
				if d.After(deadline) {
					d = deadline
				}
				c.SetReadDeadline(d)
				n, from, err := c.ReadFromUDPAddrPort(buf)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					if time.Now().After(deadline) {
						return
					}
					continue
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("receive at %v in %s: %w", k.at, k.h, err))
					mu.Unlock()
					return
				}
				var i int
				if _, err := fmt.Sscanf(string(buf[:min(n, 9)]), "flow %04d", &i); err != nil || i >= len(flows) || flows[i].to != k.h || flows[i].at != k.at {
					errs = append(errs, fmt.Errorf("a datagram that is no flow's arrived at %v in %s from %v", k.at, k.h, from))
				} else {
					fates[i].arrived++
					fates[i].srcs[from.Addr().Unmap()] = true
					got++
				}
				mu.Unlock()
			}
		}(k, c)
	}
	wg.Wait()
	for i, f := range fates {
		if f.arrived > f.sent {
			errs = append(errs, fmt.Errorf("flow %s: %d datagrams arrived, %d sent", flows[i].name, f.arrived, f.sent))
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
	return fates
}

// dcase is one case of a differential test.
type dcase struct {
	name   string
	policy map[string]string // filter's builtin chain -> policy; ACCEPT if absent
	rules  string            // filter's ":chain" lines and rules
	nat    string            // nat's rules (restored, empty or not, when the test loads iptable_nat)
	mangle string            // mangle's rules (likewise with iptable_mangle)
	// setup, if set, runs after the tables are in place and before the
	// flows; what it returns runs after them and gives lines to compare
	// (a listener's count, say).
	setup func(t *testing.T) func() []string
	flows []flow
	// What ip_tables must do: a flow's fate (a prefix of fate.String)
	// and the counters of rules ("INPUT 2", "FORWARD policy") in
	// iptables-legacy -L -v -x -n, as "packets bytes".
	want     map[string]string
	counters map[string]string
}

// observation is what a case did on one backend.
type observation struct {
	errs  []string // restores that failed
	fates []string // one line per flow, and setup's lines
	list  string   // iptables-legacy -t filter -L -v -x -n
	save  string   // iptables-legacy-save -c -t filter, without comments
	other string   // the nat and mangle tables' listings
}

var (
	natChains    = []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}
	mangleChains = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
	filterChains = []string{"INPUT", "FORWARD", "OUTPUT"}
)

// tableInput is iptables-legacy-restore input for table with the given
// builtin chains, policies and rules.
func tableInput(table string, chains []string, policy map[string]string, rules string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%s\n", table)
	for _, c := range chains {
		p := policy[c]
		if p == "" {
			p = "ACCEPT"
		}
		fmt.Fprintf(&b, ":%s %s [0:0]\n", c, p)
	}
	for _, l := range strings.Split(strings.TrimSpace(rules), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			b.WriteString(l + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// extras are the modules of ip_tables' other tables and of what the
// tests use beside the filter table; unloadExtras removes them, those
// that are in use by nothing, so that each backend starts alike.
var extras = []string{"xt_NFQUEUE", "nfnetlink_queue", "xt_MASQUERADE", "xt_nat", "nf_nat",
	"nf_conntrack", "nf_defrag_ipv4", "nf_defrag_ipv6", "nfnetlink", "cls_matchall", "act_gact"}

// unloadExtras empties and unloads the nat and mangle tables (ip_tables
// cannot go while they are there), then the other extras.
func unloadExtras(t *testing.T) {
	t.Helper()
	for _, tb := range []struct {
		mod, name string
		chains    []string
	}{{"iptable_nat", "nat", natChains}, {"iptable_mangle", "mangle", mangleChains}} {
		if !gt.Loaded(tb.mod) {
			continue
		}
		if out, err := gt.Restore(tableInput(tb.name, tb.chains, nil, "")); err != nil {
			t.Fatalf("emptying %s: %v: %s", tb.name, err, out)
		}
		gt.MustRun(t, "rmmod", tb.mod)
	}
	for _, m := range extras {
		if gt.Loaded(m) {
			_, _ = gt.Run("rmmod", m) // still used (by bpfilter, say): stays
		}
	}
}

// useWith makes b answer for the filter table, with modules loaded
// beside it, the same under both backends.
func useWith(t *testing.T, b gt.Backend, modules []string) {
	t.Helper()
	unloadExtras(t)
	gt.Use(t, b)
	if len(modules) > 0 {
		gt.MustRun(t, "modprobe", append([]string{"-a"}, modules...)...)
	}
	t.Cleanup(func() { unloadExtras(t) })
}

var commentRe = regexp.MustCompile(`(?m)^#.*\n`)

// observe runs one case on the current backend.
func observe(t *testing.T, c dcase, modules []string) observation {
	t.Helper()
	var o observation
	restore := func(input string) {
		if out, err := gt.Restore(input); err != nil {
			o.errs = append(o.errs, fmt.Sprintf("%v: %s\n%s", err, out, input))
		}
	}
	restore(tableInput("filter", filterChains, c.policy, c.rules))
	var others []string
	if slices.Contains(modules, "iptable_nat") {
		restore(tableInput("nat", natChains, nil, c.nat))
		others = append(others, "nat")
	}
	if slices.Contains(modules, "iptable_mangle") {
		restore(tableInput("mangle", mangleChains, nil, c.mangle))
		others = append(others, "mangle")
	}
	var after func() []string
	if c.setup != nil {
		after = c.setup(t)
	}
	fates := sendFlows(t, c.flows)
	for i, f := range c.flows {
		o.fates = append(o.fates, f.name+": "+fates[i].String())
	}
	if after != nil {
		o.fates = append(o.fates, after()...)
	}
	o.list, o.save = filterListings()
	for _, tb := range others {
		o.other += runOut("iptables-legacy", "-t", tb, "-L", "-v", "-x", "-n")
	}
	return o
}

// runOut is a command's output, or its error and output.
func runOut(name string, args ...string) string {
	out, err := gt.Run(name, args...)
	if err != nil {
		out = fmt.Sprintf("%v: %s", err, out)
	}
	return out
}

// filterListings are what the backends must print alike for the filter
// table: -L -v -x -n, and -save -c without the save's comment lines.
func filterListings() (list, save string) {
	list = runOut("iptables-legacy", "-t", "filter", "-L", "-v", "-x", "-n")
	save = commentRe.ReplaceAllString(runOut("iptables-legacy-save", "-c", "-t", "filter"), "")
	return list, save
}

// bothBackends runs the cases under ip_tables, then under bpfilter (each
// backend set up by use, each case observed by observe), ends with
// ip_tables answering (bpfilter gone, with whatever it held) after
// cleanup, then compares each case's two observations in a subtest named
// after it.
func bothBackends[C, O any](t *testing.T, cases []C, name func(C) string,
	use func(*testing.T, gt.Backend), observe func(*testing.T, C) O,
	cleanup func(*testing.T), compare func(*testing.T, C, O, O)) {
	t.Helper()
	got := map[gt.Backend][]O{}
	for _, b := range backends {
		start := time.Now()
		t.Run(b.String(), func(t *testing.T) {
			use(t, b)
			for _, c := range cases {
				got[b] = append(got[b], observe(t, c))
			}
			gt.Ensure(t, b)
		})
		t.Logf("%s: %d cases in %v", b, len(cases), time.Since(start).Round(time.Millisecond))
	}
	cleanup(t)
	gt.Use(t, gt.IPTables)
	for i, c := range cases {
		t.Run(strings.ReplaceAll(name(c), " ", "_"), func(t *testing.T) {
			if i >= len(got[gt.IPTables]) || i >= len(got[gt.Bpfilter]) {
				t.Fatal("a backend did not run this case")
			}
			compare(t, c, got[gt.IPTables][i], got[gt.Bpfilter][i])
		})
	}
}

// differential runs cases under ip_tables, then under bpfilter, with
// modules loaded under both, and compares them.
func differential(t *testing.T, modules []string, cases []dcase) {
	t.Helper()
	bothBackends(t, cases, func(c dcase) string { return c.name },
		func(t *testing.T, b gt.Backend) { useWith(t, b, modules) },
		func(t *testing.T, c dcase) observation { return observe(t, c, modules) },
		unloadExtras, compareCase)
}

func compareCase(t *testing.T, c dcase, want, got observation) {
	t.Helper()
	input := tableInput("filter", filterChains, c.policy, c.rules)
	if len(want.errs) > 0 {
		t.Fatalf("ip_tables: restore failed: %s", strings.Join(want.errs, "\n"))
	}
	if len(got.errs) > 0 {
		t.Errorf("bpfilter: restore failed: %s", strings.Join(got.errs, "\n"))
	}
	// The reference run must show the case's point.
	for _, f := range c.flows {
		w, ok := c.want[f.name]
		if !ok {
			continue
		}
		line := ""
		for _, l := range want.fates {
			if strings.HasPrefix(l, f.name+": ") {
				line = strings.TrimPrefix(l, f.name+": ")
			}
		}
		if !strings.HasPrefix(line, w) {
			t.Errorf("ip_tables: flow %s: %s; the case says %s", f.name, line, w)
		}
	}
	for k := range c.want {
		if !slices.ContainsFunc(c.flows, func(f flow) bool { return f.name == k }) {
			t.Errorf("the case expects a fate of %s, which is no flow of it", k)
		}
	}
	for k, w := range c.counters {
		f := strings.Fields(k)
		if g := counter(want.list, f[0], f[1]); g != w {
			t.Errorf("ip_tables: %s counts %q; the case says %q\n%s", k, g, w, want.list)
		}
	}
	t.Logf("ip_tables:\n%s", strings.Join(want.fates, "\n"))
	if !slices.Equal(want.fates, got.fates) {
		t.Errorf("fates differ\nip_tables:\n%s\nbpfilter:\n%s\nrules:\n%s", strings.Join(want.fates, "\n"),
			strings.Join(got.fates, "\n"), input)
	}
	if want.list != got.list {
		t.Errorf("iptables-legacy -t filter -L -v -x -n differs\nip_tables:\n%s\nbpfilter:\n%s", want.list, got.list)
	}
	if want.save != got.save {
		t.Errorf("iptables-legacy-save -c -t filter differs\nip_tables:\n%s\nbpfilter:\n%s", want.save, got.save)
	}
	if want.other != got.other {
		t.Errorf("the other tables' listings differ\nip_tables:\n%s\nbpfilter:\n%s", want.other, got.other)
	}
}

// counter returns "packets bytes" of rule n (1-based; "policy": the
// policy) of chain in an iptables -L -v -x -n listing, or "" if there is
// no such line.
func counter(list, chain, n string) string {
	lines := strings.Split(list, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "Chain "+chain+" ") {
			continue
		}
		if n == "policy" {
			m := regexp.MustCompile(`policy \S+ (\d+) packets, (\d+) bytes`).FindStringSubmatch(l)
			if m == nil {
				return ""
			}
			return m[1] + " " + m[2]
		}
		k, _ := strconv.Atoi(n)
		if k < 1 || i+1+k >= len(lines) {
			return ""
		}
		f := strings.Fields(lines[i+1+k])
		if len(f) < 2 || strings.HasPrefix(lines[i+1+k], "Chain ") {
			return ""
		}
		return f[0] + " " + f[1]
	}
	return ""
}

// ipLen is what ip_tables counts for one whole datagram of payload bytes.
func ipLen(payload int) int { return 20 + 8 + payload }

// count is "n packets of n datagrams of payload bytes" as counter says it.
func count(n, payload int) string { return fmt.Sprintf("%d %d", n, n*ipLen(payload)) }
