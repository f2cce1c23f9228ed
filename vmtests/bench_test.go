//go:build bench

package vmtests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
	"golang.org/x/sys/unix"
)

const codegenPkg = "github.com/bpfilter/bpfilter/umh/internal/datapath"

// TestBench is `make bench` (not part of `make test`), all in one run:
//
//  1. host: the code generator's per-packet benchmark (BenchmarkMatchLast,
//     BPF_PROG_TEST_RUN) on this machine's kernel, as root, and the time to
//     compile and load 10,000 rules (BenchmarkCompileLoad, the umh's part
//     of a restore; the VM runs it too);
//  2. VM: the same benchmark on the 6.1 test kernel, every table and size
//     (the guest binary is linked with codegen.benchAll set: without it,
//     TestCodegen measures only two sizes);
//  3. VM: vmtests/guest/bench, bpfilter against ip_tables: the packet
//     rate through veth pairs and the per-packet cost of the whole path
//     (netfilter hook, the module's wrapper, the program), restore to
//     enforcement, and the timing of iptables-legacy-restore, -L and -S.
//
// The per-packet tables are printed at the end, as README shows them; the
// guest's tables are in its tests' output. With BPFILTER_BENCH_RUN set
// (make bench RUN=TestStateful), only part 3 runs, and of it only the guest
// tests and benchmarks that pattern matches.
func TestBench(t *testing.T) {
	cfg, err := vm.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	run := os.Getenv("BPFILTER_BENCH_RUN")
	var host, guest map[string]perPacket
	if run == "" {
		perPacketParts(t, cfg, &host, &guest)
	}
	t.Run("vm-iptables", func(t *testing.T) {
		vm.GuestTests{
			Pkg:     "github.com/bpfilter/bpfilter/vmtests/guest/bench",
			Timeout: 30 * time.Minute,
			Only:    run,
		}.Run(t)
	})
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	rel, _ := cfg.Release()
	if host != nil {
		t.Logf("per-packet cost, host (Linux %s, JIT), %s:\n%s", unix.ByteSliceToString(uts.Release[:]),
			time.Now().Format("2006-01-02"), perPacketTable(host))
	}
	if guest != nil {
		t.Logf("per-packet cost, VM (Linux %s under TCG):\n%s", rel, perPacketTable(guest))
	}
}

// perPacketParts are parts 1 and 2 of TestBench.
func perPacketParts(t *testing.T, cfg vm.Config, host, guest *map[string]perPacket) {
	t.Run("host-per-packet", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Fatal("the host's per-packet benchmark needs root (BPF_PROG_TEST_RUN): run make bench as root")
		}
		cmd := exec.Command("go", "test", "-count=1", "-run=^$", "-bench=^(BenchmarkMatchLast|BenchmarkCompileLoad)$", codegenPkg)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go test -bench: %v\n%s", err, out)
		}
		t.Logf("\n%s", out)
		*host = parsePerPacket(t, string(out))
	})
	t.Run("vm-per-packet", func(t *testing.T) {
		flags := strings.TrimSpace(os.Getenv("GOFLAGS") + " -ldflags=-X=" + codegenPkg + ".benchAll=1")
		t.Setenv("GOFLAGS", flags)
		vm.GuestTests{Pkg: codegenPkg, Timeout: 15 * time.Minute}.Run(t)
		serial, err := os.ReadFile(filepath.Join(cfg.Build, "vmtest-datapath.log"))
		if err != nil {
			t.Fatal(err)
		}
		*guest = parsePerPacket(t, string(serial))
	})
}

// perPacket is one result of BenchmarkMatchLast.
type perPacket struct {
	ns, x1rule float64
}

var (
	perPacketRE = regexp.MustCompile(`^BenchmarkMatchLast/([\w-]+)/(\d+)(?:-\d+)?\s+\d+\s+[\d.]+ ns/op\s+([\d.]+) ns/packet(?:\s+([\d.]+) x1rule)?`)
	// the tables and sizes of BenchmarkMatchLast, in README's order
	perPacketTables = []struct{ name, title string }{
		{"classified", "one shape"},
		{"classified-100chains", "100 user chains"},
		{"classified-5shapes", "5 mixed shapes"},
		{"linear", "linear walk (comparison)"},
	}
	perPacketSizes = []int{1, 100, 1000, 10000}
)

// parsePerPacket reads BenchmarkMatchLast's results from out, keyed
// "table/rules", and fails t unless every table and size is there.
func parsePerPacket(t *testing.T, out string) map[string]perPacket {
	t.Helper()
	res := map[string]perPacket{}
	for _, l := range strings.Split(out, "\n") {
		m := perPacketRE.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		var r perPacket
		r.ns, _ = strconv.ParseFloat(m[3], 64)
		if m[4] != "" {
			r.x1rule, _ = strconv.ParseFloat(m[4], 64)
		}
		res[m[1]+"/"+m[2]] = r
	}
	for _, tb := range perPacketTables {
		for _, n := range perPacketSizes {
			if _, ok := res[fmt.Sprintf("%s/%d", tb.name, n)]; !ok {
				t.Errorf("no result for BenchmarkMatchLast/%s/%d", tb.name, n)
			}
		}
	}
	return res
}

// perPacketTable is res as a markdown table: ns/packet and, beyond 1 rule,
// the ratio to the same table's cost at 1 rule.
func perPacketTable(res map[string]perPacket) string {
	var b strings.Builder
	b.WriteString("| rules |")
	for _, tb := range perPacketTables {
		b.WriteString(" " + tb.title + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(perPacketTables)) + "\n")
	for _, n := range perPacketSizes {
		fmt.Fprintf(&b, "| %s |", commas(n))
		for _, tb := range perPacketTables {
			r, ok := res[fmt.Sprintf("%s/%d", tb.name, n)]
			switch {
			case !ok:
				b.WriteString(" - |")
			case n == 1:
				fmt.Fprintf(&b, " %s ns |", commas(int(r.ns+0.5)))
			default:
				fmt.Fprintf(&b, " %s ns (%.1fx) |", commas(int(r.ns+0.5)), r.x1rule)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func commas(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
