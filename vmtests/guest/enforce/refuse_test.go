//go:build vmguest

package enforce

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// TestAttachRefused: a table that cannot be enforced is not installed. An
// interface with an ingress qdisc (which excludes the clsact qdisc bpfilter
// needs) makes SET_REPLACE fail with an errno and one kernel log line
// saying why; the rules stay as they were and nothing is left attached.
// Once the qdisc is gone the same command works.
func TestAttachRefused(t *testing.T) {
	use(t, gt.Bpfilter)
	c, d := newNS(t, "c"), newNS(t, "d")
	veth(t, c, "vc", "10.9.1.1/24", d, "vd", "10.9.1.2/24")
	vc, err := c.nl.LinkByName("vc")
	if err != nil {
		t.Fatal(err)
	}
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: vc.Attrs().Index,
		Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
	if err := c.nl.QdiscAdd(ingress); err != nil {
		t.Fatalf("ingress qdisc: %v", err)
	}
	before := c.ipt(t, "-S")
	k := gt.NewKmsg(t)
	out, err := c.run("", "iptables-legacy", "-A", "INPUT", "-p", "udp", "--dport", "23", "-j", "DROP")
	if err == nil {
		t.Fatalf("iptables accepted a table that cannot be attached:\n%s", out)
	}
	t.Logf("iptables-legacy: %v: %s", err, strings.TrimSpace(out))
	re := regexp.MustCompile(`bpfilter_umh: IPT_SO_SET_REPLACE: table not installed: .*vc has an ingress qdisc`)
	if k.Wait(t, re, 5*time.Second) == nil {
		t.Fatalf("no kernel log line says why; log:\n%s", strings.Join(k.Lines(), "\n"))
	}
	if got := c.ipt(t, "-S"); got != before {
		t.Fatalf("the refused table changed the rules:\n%s\nwant:\n%s", got, before)
	}
	if filters, clsacts := c.tcState(t); len(filters) != 0 || len(clsacts) != 0 {
		t.Fatalf("a refused table left filters %v and qdiscs %v", filters, clsacts)
	}

	if err := c.nl.QdiscDel(ingress); err != nil {
		t.Fatal(err)
	}
	c.ipt(t, "-A", "INPUT", "-p", "udp", "--dport", "23", "-j", "DROP")
	if filters, clsacts := c.tcState(t); len(filters) == 0 || len(clsacts) == 0 {
		t.Fatalf("no filters once the ingress qdisc is gone: %v, %v", filters, clsacts)
	}
}
