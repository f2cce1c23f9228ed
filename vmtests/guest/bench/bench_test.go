//go:build vmguest

// Package bench holds the guest side of the iptables benchmarks,
// bpfilter against ip_tables in the same VM (`make bench` runs them):
// iptables-legacy-restore, -L and -S of many rules (the Benchmark
// functions), the packet rate through the VM's veth pairs
// (TestThroughput) and the time from a restore to enforcement
// (TestRestoreToEnforcement). Timed parts run with request_module
// disabled (gt.NoModprobe, gt.DisableModprobe), so that ip_tables is not
// charged for the kernel asking for bpfilter first.
package bench

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

func TestMain(m *testing.M) { gt.MainWithoutStub(m) }

var sizes = []int{1000, 10000}

var backends = []gt.Backend{gt.IPTables, gt.Bpfilter}

// rules is a filter table of n distinct rules, as iptables-restore input.
func rules(n int) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "-A INPUT -s 10.%d.%d.0/24 -p tcp --dport %d -j DROP\n", i/250, i%250, 1+i%60000)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

func BenchmarkRestore(b *testing.B) {
	for _, n := range sizes {
		in := rules(n)
		for _, be := range backends {
			b.Run(fmt.Sprintf("rules=%d/%s", n, be), func(b *testing.B) {
				gt.Use(b, be)
				gt.MustRun(b, "modprobe", "xt_tcpudp")
				gt.NoModprobe(b)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if out, err := gt.Restore(in); err != nil {
						b.Fatalf("restore: %v: %s", err, out)
					}
				}
				b.StopTimer()
				gt.Ensure(b, be)
			})
		}
	}
}

func benchmarkCommand(b *testing.B, args ...string) {
	for _, n := range sizes {
		in := rules(n)
		for _, be := range backends {
			b.Run(fmt.Sprintf("rules=%d/%s", n, be), func(b *testing.B) {
				gt.Use(b, be)
				if out, err := gt.Restore(in); err != nil {
					b.Fatalf("restore: %v: %s", err, out)
				}
				gt.NoModprobe(b)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					out := gt.MustRun(b, "iptables-legacy", args...)
					if strings.Count(out, "\n") < n {
						b.Fatalf("%v printed %d lines for %d rules", args, strings.Count(out, "\n"), n)
					}
				}
				b.StopTimer()
				gt.Ensure(b, be)
			})
		}
	}
}

func BenchmarkList(b *testing.B) { benchmarkCommand(b, "-L", "-n") }

func BenchmarkSave(b *testing.B) { benchmarkCommand(b, "-S") }
