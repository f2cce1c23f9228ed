package ipt

import (
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt/kerneltest"
)

var update = flag.Bool("update", false, "rewrite testdata from iptables-legacy captures (needs root, gcc, iptables-legacy)")

// readHex reads a testdata file of hex lines; '#' starts a comment line.
func readHex(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		sb.WriteString(strings.TrimSpace(line))
	}
	b, err := hex.DecodeString(sb.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

func writeHex(t testing.TB, name, comment string, b []byte) {
	t.Helper()
	var sb strings.Builder
	for _, l := range strings.Split(strings.TrimRight(comment, "\n"), "\n") {
		sb.WriteString("# " + l + "\n")
	}
	for i := 0; i < len(b); i += 32 {
		sb.WriteString(hex.EncodeToString(b[i:min(i+32, len(b))]) + "\n")
	}
	if err := os.WriteFile(filepath.Join("testdata", name), []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// zeroCountersPtr clears ipt_replace.counters, a heap address of the
// capturing process.
func zeroCountersPtr(b []byte) []byte {
	b = append([]byte(nil), b...)
	clear(b[replaceCountersPtrOf : replaceCountersPtrOf+8])
	return b
}

func writeCapture(t testing.TB, name, script string, recs []kerneltest.Record) {
	t.Helper()
	// The counters pointer is a heap address of the capturing process.
	for i, r := range recs {
		if r.Kind == kerneltest.Set && r.Opt == SoSetReplace && len(r.Data) >= ReplaceSize {
			recs[i].Data = zeroCountersPtr(r.Data)
		}
	}
	if err := kerneltest.WriteCaptureFile(filepath.Join("testdata", name), script, recs); err != nil {
		t.Fatal(err)
	}
}

func readCapture(t testing.TB, name string) []kerneltest.Record {
	t.Helper()
	recs, err := kerneltest.ReadCaptureFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
