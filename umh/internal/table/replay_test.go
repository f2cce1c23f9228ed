package table

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/bpfilter/bpfilter/umh/internal/ipt/kerneltest"
)

// kernelStatus is what the recorded call returned, as a Sockopt status.
func kernelStatus(r kerneltest.Record) int32 {
	if r.Ret < 0 {
		return -int32(r.Errno)
	}
	return r.Ret
}

// TestReplayCapture replays every sockopt call that iptables-legacy made in
// ../ipt/testdata/sequence.capture (inserting, deleting, zeroing, policies,
// user chains, iptables-restore with counters, iptables-save) and expects
// the kernel's answers byte for byte: statuses, GET_INFO and GET_ENTRIES
// buffers, and the old counters a replace hands back.
func TestReplayCapture(t *testing.T) {
	calls := replay(t, "../ipt/testdata/sequence.capture")
	if calls["set 64"] < 10 || calls["get 65"] < 10 || calls["set 65"] < 10 {
		t.Fatalf("too few calls replayed: %v", calls)
	}
}

// TestReplayKernelExts replays ../ipt/testdata/kernel-exts.capture:
// iptables-legacy-restore of rules with every kernel-hosted extension
// (REJECT, LOG, limit, addrtype, recent, mark, nfacct, mac, pkttype,
// length, ttl, tos, dscp, ecn, owner), its revision probes, and
// iptables-legacy-save reading them back.
func TestReplayKernelExts(t *testing.T) {
	calls := replay(t, "../ipt/testdata/kernel-exts.capture")
	if calls["set 64"] != 1 || calls["get 65"] < 2 || calls["get 66"] < 20 || calls["get 67"] < 4 {
		t.Fatalf("too few calls replayed: %v", calls)
	}
}

// replay replays the capture file at path against a fresh Server and
// expects the kernel's answers; it returns the calls replayed by kind.
func replay(t *testing.T, path string) map[string]int {
	t.Helper()
	recs, err := kerneltest.ReadCaptureFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := New()
	const ns = 4026531840
	calls := map[string]int{}
	for i := 0; i < len(recs); i++ {
		r := recs[i]
		switch r.Kind {
		case kerneltest.GetIn:
			out := recs[i+1]
			i++
			if out.Kind != kerneltest.GetOut || out.Opt != r.Opt {
				t.Fatalf("record %d: get-in without get-out", i)
			}
			mem := newMem(append([]byte(nil), r.Data...))
			status, reason := s.Sockopt(ns, uint32(r.Opt), false, mem)
			if (r.Opt == ipt.SoGetRevisionMatch || r.Opt == ipt.SoGetRevisionTarget) && status == -int32(unix.ENOPROTOOPT) {
				calls["revision left to ip_tables"]++
				continue
			}
			if want := kernelStatus(out); status != want {
				t.Fatalf("record %d: getsockopt %d: status %d (%s), kernel %d", i, r.Opt, status, reason, want)
			}
			if !bytes.Equal(mem.buf, out.Data) {
				t.Fatalf("record %d: getsockopt %d: buffer differs from the kernel's:\n%s", i, r.Opt, firstDiff(mem.buf, out.Data))
			}
			calls["get "+itoa(uint32(r.Opt))]++
		case kerneltest.Set:
			mem := newMem(append([]byte(nil), r.Data...))
			status, reason := s.Sockopt(ns, uint32(r.Opt), true, mem)
			if want := kernelStatus(r); status != want {
				t.Fatalf("record %d: setsockopt %d: status %d (%s), kernel %d", i, r.Opt, status, reason, want)
			}
			if r.Opt == ipt.SoSetReplace && status == 0 {
				old := recs[i+1]
				i++
				if old.Kind != kerneltest.OldCounters || len(mem.counters) != 1 || !bytes.Equal(mem.counters[0], old.Data) {
					t.Fatalf("record %d: old counters %x, kernel %x", i, mem.counters, old.Data)
				}
			}
			calls["set "+itoa(uint32(r.Opt))]++
		default:
			t.Fatalf("record %d: unexpected %v", i, r.Kind)
		}
	}
	t.Logf("replayed: %v", calls)
	return calls
}

func firstDiff(got, want []byte) string {
	if len(got) != len(want) {
		return "lengths " + itoa(uint32(len(got))) + " / " + itoa(uint32(len(want)))
	}
	for i := range got {
		if got[i] != want[i] {
			lo := max(0, i-8)
			hi := min(len(got), i+24)
			return "at " + itoa(uint32(i)) + ":\n got  " + hexs(got[lo:hi]) + "\n want " + hexs(want[lo:hi])
		}
	}
	return "equal"
}

func hexs(b []byte) string {
	const d = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, d[c>>4], d[c&15])
	}
	return string(out)
}
