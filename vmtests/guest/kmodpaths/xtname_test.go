//go:build vmguest

package kmodpaths

import (
	"strings"
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// xtModules are the x_tables users the guest may have loaded, in an order
// that rmmod accepts.
var xtModules = []string{"iptable_filter", "iptable_nat", "iptable_mangle", "ip_tables", "x_tables"}

// TestBesideIptableFilter: the module names "filter" in
// /proc/net/ip_tables_names with an x_tables table of its own (no hooks,
// no entries) in each namespace whose filter table the umh served. 6.1's
// iptable_filter unregisters the table of that name, whoever made it, at
// a namespace's exit and at its rmmod. Nothing oopses or warns (the
// harness fails the run on any kernel problem; before the fix, x_tables
// warned of a table left and iptable_filter's pre_exit oopsed):
//   - x_tables loaded by bpfilter on first use, after bpfilter: a served
//     namespace exits without x_tables finding a table left;
//   - iptable_filter loaded after bpfilter: the names go (and do not come
//     while it is loaded); a served namespace exits;
//   - iptable_filter loaded before bpfilter: a served namespace exits
//     beside it; its rmmod takes a namespace's name, which the next call
//     the umh serves there brings back.
func TestBesideIptableFilter(t *testing.T) {
	fresh(t)
	for _, m := range xtModules {
		if gt.Loaded(m) {
			gt.MustRun(t, "rmmod", m)
		}
	}
	load(t, gt.GoodKO)
	names := func(n *ns) string {
		return strings.TrimSpace(n.run(t, "", "cat", "/proc/net/ip_tables_names"))
	}
	serve := func(n *ns, port string) {
		n.run(t, "", "iptables-legacy", "-A", "INPUT", "-p", "udp", "--dport", port, "-j", "DROP")
	}

	// x_tables comes with the first served namespace.
	a := newNS(t, "kxa")
	a.run(t, nsTable, "iptables-legacy-restore")
	if !gt.Loaded("x_tables") {
		t.Fatal("x_tables not loaded after the umh served a filter table")
	}
	// /proc/net/ip_tables_names is ip_tables' (libxtables modprobes it
	// when the file is missing).
	gt.MustRun(t, "modprobe", "ip_tables")
	if got := names(a); got != "filter" {
		t.Fatalf("/proc/net/ip_tables_names in a served namespace: %q, want filter", got)
	}
	a.gone(t)

	// iptable_filter after bpfilter.
	b := newNS(t, "kxb")
	serve(b, "24")
	gt.MustRun(t, "modprobe", "iptable_filter")
	if got := names(b); got != "" {
		t.Errorf("/proc/net/ip_tables_names with iptable_filter loaded after bpfilter: %q, want none", got)
	}
	serve(b, "25")
	if got := names(b); got != "" {
		t.Errorf("/proc/net/ip_tables_names after a served call beside iptable_filter: %q, want none", got)
	}
	b.gone(t)

	// iptable_filter before bpfilter.
	gt.Unload(t)
	load(t, gt.GoodKO)
	c := newNS(t, "kxc")
	serve(c, "24")
	if got := names(c); got != "filter" {
		t.Errorf("/proc/net/ip_tables_names, iptable_filter loaded before bpfilter: %q, want filter", got)
	}
	c.gone(t)
	d := newNS(t, "kxd")
	serve(d, "24")
	gt.MustRun(t, "rmmod", "iptable_filter")
	if got := names(d); got != "" {
		t.Errorf("/proc/net/ip_tables_names after rmmod iptable_filter: %q, want none", got)
	}
	serve(d, "25")
	if got := names(d); got != "filter" {
		t.Errorf("/proc/net/ip_tables_names after the next served call: %q, want filter", got)
	}
	if got := d.run(t, "", "iptables-legacy-save"); !strings.Contains(got, "--dport 25 -j DROP") {
		t.Errorf("iptables-legacy-save without -t:\n%s", got)
	}
	d.gone(t)
	gt.Unload(t)
}
