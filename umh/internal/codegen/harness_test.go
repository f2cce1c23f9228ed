package codegen

import (
	"errors"
	"os"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// needBPF skips unprivileged runs and fails if root cannot load BPF.
func needBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for BPF (BPF_PROG_TEST_RUN); skipped as an unprivileged user")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("BPF unavailable: %v", err)
	}
}

// table lays out b as libiptc would and validates it as ip_tables would.
func table(t testing.TB, b *ipt.Builder) *ipt.Table {
	t.Helper()
	blob, err := b.Replace(4, 0)
	if err != nil {
		t.Fatalf("layout: %v", err)
	}
	h, err := ipt.ParseReplaceHeader(blob)
	if err != nil {
		t.Fatalf("header: %v", err)
	}
	tb, err := ipt.Translate(&h, blob[ipt.ReplaceSize:])
	if err != nil {
		t.Fatalf("translate: %v", err)
	}
	return tb
}

// loaded is a compiled, loaded table.
type loaded struct {
	tb   *ipt.Table
	spec *Spec
	objs *Objects
}

func load(t testing.TB, tb *ipt.Table, opts Options) *loaded {
	t.Helper()
	spec, err := Compile(tb, opts)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	objs, err := spec.Load(nil)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("load: %+v", ve)
		}
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	return &loaded{tb: tb, spec: spec, objs: objs}
}

// skbCtx is the head of struct __sk_buff, as BPF_PROG_TEST_RUN takes it.
type skbCtx struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto uint32
	Priority, IngressIfindex, Ifindex                                           uint32
}

const (
	testIfindex   = 1 // lo: BPF_PROG_TEST_RUN runs on it
	testIngressIf = 7 // any number: only the ifnames map knows it
)

// run runs the program of hook h on p, with the interfaces of p put into
// the ifnames map where h looks for them. It returns the TC verdict.
func (l *loaded) run(t testing.TB, h Hook, p *pkt) uint32 {
	t.Helper()
	ctx := skbCtx{Ifindex: testIfindex}
	name := func(src Iface) string {
		if h.In == src {
			return p.in
		}
		return p.out
	}
	for _, src := range []Iface{IfaceSkb, IfaceIngress} {
		if h.In != src && h.Out != src {
			continue
		}
		idx := uint32(testIfindex)
		if src == IfaceIngress {
			idx = testIngressIf
			ctx.IngressIfindex = idx
		}
		if err := l.objs.SetIfname(idx, name(src)); err != nil {
			t.Fatal(err)
		}
	}
	ret, err := l.objs.Program(h.Hook).Run(&ebpf.RunOptions{Data: p.frame(), Context: ctx})
	if err != nil {
		t.Fatalf("run %v: %v", p, err)
	}
	return ret
}

// hookIfaces: which of the packet's interfaces the hook can see.
func hookView(h Hook, p pkt) pkt {
	if h.In == IfaceNone {
		p.in = ""
	}
	if h.Out == IfaceNone {
		p.out = ""
	}
	return p
}
