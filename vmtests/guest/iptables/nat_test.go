//go:build vmguest

package iptables

import (
	"strings"
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// natModules are what MASQUERADE and DNAT rules in the nat table need of the
// kernel (kconfig/netfilter.config).
var natModules = []string{"iptable_nat", "xt_MASQUERADE", "xt_nat"}

// natSteps set up and show a nat table while someone else holds filter.
var natSteps = []step{
	ipt("-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-j", "MASQUERADE"),
	ipt("-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.0.0.2:80"),
	ipt("-t", "nat", "-S"),
	ipt("-t", "nat", "-L", "-n", "-v", "-x"),
	ipt("-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"),
	ipt("-S"),
	save("-c"),
	{cmd: "iptables-legacy-save", args: []string{"-t", "nat"}},
	saveAll(),
	ipt("-t", "nat", "-F"),
	ipt("-t", "nat", "-S"),
}

// TestNatBesideFilter: with iptable_nat loaded, a nat rule set while
// bpfilter holds the filter table works as it does beside ip_tables'
// filter table: `-t nat -A POSTROUTING -j MASQUERADE` succeeds, `-t nat
// -S` and -L show it, the filter table is still bpfilter's, and
// everything printed is the same under both backends.
func TestNatBesideFilter(t *testing.T) {
	defer gt.Use(t, gt.IPTables)
	res := map[gt.Backend][]result{}
	for _, b := range backends() {
		t.Run(b.String(), func(t *testing.T) {
			gt.Use(t, b)
			gt.MustRun(t, "modprobe", "-a", "nf_nat")
			out, err := gt.Run("modprobe", append([]string{"-a"}, natModules...)...)
			if err != nil {
				t.Fatalf("the nat table needs %s (CONFIG_IP_NF_NAT, CONFIG_NETFILTER_XT_TARGET_MASQUERADE, CONFIG_NETFILTER_XT_NAT): %v\n%s",
					strings.Join(natModules, ", "), err, out)
			}
			defer func() {
				_, _ = gt.Run("iptables-legacy", "-t", "nat", "-F")
				// ip_tables stays pinned by iptable_nat: gt.Use
				// unloads ip_tables next.
				gt.MustRun(t, "rmmod", "iptable_nat")
			}()
			gt.MustRun(t, "modprobe", append([]string{"-a"}, gt.Extensions...)...)
			restore := gt.DisableModprobe(t)
			defer restore()
			for _, s := range natSteps {
				r := run(s)
				res[b] = append(res[b], r)
				if r.code != 0 {
					t.Errorf("%s: exit %d:\n%s", describe(s), r.code, r.out)
				}
			}
			if r := res[b][2]; !strings.Contains(r.out, "-A POSTROUTING -o eth0 -j MASQUERADE\n") {
				t.Errorf("iptables-legacy -t nat -S does not show the MASQUERADE rule:\n%s", r.out)
			}
			gt.Ensure(t, b)
		})
	}
	want, got := res[gt.IPTables], res[gt.Bpfilter]
	if len(want) != len(natSteps) || len(got) != len(natSteps) {
		t.Fatalf("steps run: ip_tables %d, bpfilter %d, of %d", len(want), len(got), len(natSteps))
	}
	for i, s := range natSteps {
		if got[i] != want[i] {
			t.Errorf("%s:\nip_tables (exit %d):\n%s\nbpfilter (exit %d):\n%s", describe(s), want[i].code, want[i].out, got[i].code, got[i].out)
		}
	}
}

func backends() []gt.Backend { return []gt.Backend{gt.IPTables, gt.Bpfilter} }
