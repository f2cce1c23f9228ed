// Package cvalues evaluates C constant expressions (sizes, offsets,
// macros) with the host's C compiler, for tests that pin Go definitions
// to C headers.
package cvalues

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Expr is a named C expression of integer type.
type Expr struct {
	Name string // a single word
	C    string
}

// Eval compiles a program that includes the given headers (<...> or
// "path") and prints every expression, and returns the values by name.
// A missing compiler or a compile error fails t.
func Eval(t testing.TB, includes []string, exprs []Expr) map[string]int64 {
	t.Helper()
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatalf("pinning Go to C needs gcc: %v", err)
	}
	var prog strings.Builder
	prog.WriteString("#include <stdio.h>\n#include <stddef.h>\n")
	for _, inc := range includes {
		prog.WriteString("#include " + inc + "\n")
	}
	prog.WriteString("int main(void) {\n")
	for _, e := range exprs {
		prog.WriteString("printf(\"" + e.Name + " %lld\\n\", (long long)(" + e.C + "));\n")
	}
	prog.WriteString("return 0;\n}\n")

	dir := t.TempDir()
	src := filepath.Join(dir, "values.c")
	if err := os.WriteFile(src, []byte(prog.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "values")
	if out, err := exec.Command(cc, "-Wall", "-Werror", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("compile C values: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("bad line %q", line)
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatalf("bad line %q", line)
		}
		m[f[0]] = v
	}
	return m
}

// EvalAll is Eval for the C expressions that are the keys of want (their
// values ignored), and returns the values by expression: what a test
// compares with want.
func EvalAll(t testing.TB, includes []string, want map[string]int64) map[string]int64 {
	t.Helper()
	var exprs []Expr
	byName := map[string]string{}
	for c := range want {
		n := "v" + strconv.Itoa(len(exprs))
		byName[n] = c
		exprs = append(exprs, Expr{Name: n, C: c})
	}
	got := map[string]int64{}
	for n, v := range Eval(t, includes, exprs) {
		got[byName[n]] = v
	}
	return got
}
