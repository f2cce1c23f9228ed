package vm

import (
	"io"
	"os"
	"strings"
)

// KernelProblems returns the lines of a serial log that show the kernel
// in trouble: oopses, BUGs, warnings, KASAN and kmemleak reports.
func KernelProblems(serialLog string) ([]string, error) {
	f, err := os.Open(serialLog)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, sign := range []string{"Oops", "BUG:", "WARNING:", "Call Trace:", "KASAN", "kmemleak:", "Kernel panic"} {
			if strings.Contains(line, sign) {
				bad = append(bad, strings.TrimSpace(line))
				break
			}
		}
	}
	return bad, nil
}
