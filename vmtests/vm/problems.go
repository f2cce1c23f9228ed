package vm

import (
	"os"
	"regexp"
	"strings"
)

// kernelProblem is one kind of line that shows the kernel in trouble,
// with the detector that prints it (for the failure message).
type kernelProblem struct {
	by   string
	sign *regexp.Regexp
}

// kernelProblems: what the kernel and its debuggers (kconfig/debug.config,
// kconfig/kasan.config) print when they find something. Lockdep, sleeping
// in atomic context, KFENCE and KASAN report through WARNING:/BUG:;
// debugobjects and DEBUG_LIST through WARN and BUG.
var kernelProblems = []kernelProblem{
	{"oops", regexp.MustCompile(`Oops|general protection fault|Kernel panic|Call Trace:`)},
	{"BUG/WARN", regexp.MustCompile(`BUG:|kernel BUG at|WARNING:`)},
	{"KASAN", regexp.MustCompile(`KASAN:`)},
	{"SLUB debug", regexp.MustCompile(`BUG \S+ \(.*\): `)},
	{"kmemleak", regexp.MustCompile(`suspected memory leak`)},
	{"lockdep", regexp.MustCompile(`turning off the locking correctness validator|INFO: lockdep is turned off`)},
	{"hung task", regexp.MustCompile(`INFO: task \S+ blocked for more than`)},
	{"RCU stall", regexp.MustCompile(`detected stalls on CPUs|self-detected stall on CPU`)},
}

// KernelProblems returns the lines of a kernel log (serial console or
// dmesg) that show the kernel in trouble, each prefixed with the detector
// that printed it: oopses, BUGs, warnings, lockdep, KASAN, KFENCE, SLUB
// debugging, kmemleak, hung tasks and RCU stalls.
func KernelProblems(log string) ([]string, error) {
	b, err := os.ReadFile(log)
	if err != nil {
		return nil, err
	}
	return problemLines(string(b)), nil
}

func problemLines(log string) []string {
	var bad []string
	for _, line := range strings.Split(log, "\n") {
		for _, p := range kernelProblems {
			if p.sign.MatchString(line) {
				bad = append(bad, p.by+": "+strings.TrimSpace(line))
				break
			}
		}
	}
	return bad
}
