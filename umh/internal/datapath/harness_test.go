package datapath

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

// hookCtx is struct bpfilter_ctx for hook h and the interfaces of p, as
// the module fills it.
func hookCtx(h Hook, p *pkt) bpfCtx {
	var c bpfCtx
	c.Hook = map[int]uint32{ipt.HookLocalIn: 1, ipt.HookForward: 2, ipt.HookLocalOut: 3}[h.Hook]
	if h.In && p.in != "" {
		c.InIfindex = 7
		for i := 0; i < len(p.in) && i < len(c.In); i++ {
			c.In[i] = int8(p.in[i])
		}
	}
	if h.Out && p.out != "" {
		c.OutIfindex = 8
		for i := 0; i < len(p.out) && i < len(c.Out); i++ {
			c.Out[i] = int8(p.out[i])
		}
	}
	return c
}

// run runs the program of hook h on p, with the ctx map filled (on every
// CPU) as the module fills it at h. It returns the netfilter verdict.
func (l *loaded) run(t testing.TB, h Hook, p *pkt) uint32 {
	t.Helper()
	v := hookCtx(h, p)
	vals := make([]bpfCtx, possibleCPUs())
	for i := range vals {
		vals[i] = v
	}
	if err := l.objs.Ctx.Put(uint32(0), vals); err != nil {
		t.Fatal(err)
	}
	ret, err := l.objs.Program(h.Hook).Run(&ebpf.RunOptions{Data: p.frame(), Context: skbCtx{Ifindex: 1}})
	if err != nil {
		t.Fatalf("run %v: %v", p, err)
	}
	return ret
}

// hookView: the packet with only the interfaces the hook has.
func hookView(h Hook, p pkt) pkt {
	if !h.In {
		p.in = ""
	}
	if !h.Out {
		p.out = ""
	}
	return p
}
