package gt

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RunFile, in the shared directory, holds a pattern when the host wants only
// some of a group's tests and benchmarks (vm.GuestTests.KmodTests, Only): it
// becomes -test.run and -test.bench.
var RunFile = filepath.Join(filepath.Dir(ModDir), "run")

// RunTests runs m's tests and returns the exit code: all of them, or only those
// that RunFile names.
func RunTests(m *testing.M) int {
	flag.Parse()
	b, err := os.ReadFile(RunFile)
	switch {
	case os.IsNotExist(err):
	case err != nil:
		fmt.Println(err)
		return 1
	default:
		pattern := strings.TrimSpace(string(b))
		for _, f := range []string{"test.run", "test.bench"} {
			if err := flag.Set(f, pattern); err != nil {
				fmt.Println(err)
				return 1
			}
		}
		fmt.Printf("the host asks for the tests matching %s only\n", pattern)
	}
	return m.Run()
}
