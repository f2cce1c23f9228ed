//go:build !vmguest

package datapath

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestGenerated runs this package's go:generate line (bpf2go and clang)
// into a temporary directory and compares its output with the files here
// byte for byte: the committed Go types, and the object make built, are
// what the C sources give.
// It fails, not skips, without clang: `make unit` installs it
// (tools/deps.sh bpf).
func TestGenerated(t *testing.T) {
	for _, tool := range []string{"clang", "llvm-strip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to check the generated files (tools/deps.sh bpf): %v", tool, err)
		}
	}
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^//go:generate go tool (bpf2go .*)$`).FindSubmatch(src)
	if m == nil {
		t.Fatal("gen.go has no go:generate line for bpf2go")
	}
	out := t.TempDir()
	args := append([]string{"tool"}, strings.Fields(string(m[1]))...)
	for i, a := range args {
		if a == "-target" {
			args = append(args[:i], append([]string{"-output-dir", out}, args[i:]...)...)
			break
		}
	}
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOPACKAGE=datapath")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	for _, f := range []string{"datapath_bpfel.o", "datapath_bpfel.go"} {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what bpf/ gives (%d bytes, regenerated %d): run make generate", f, len(got), len(want))
		}
	}
}
