package datapath

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
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
	if p.ct != nil {
		c.Flags |= CtxCT
		c.CtPresent, c.CtInfo, c.CtStatus, c.CtDir = p.ct.present, p.ct.info, p.ct.status, p.ct.dir
		c.CtProto, c.CtExpires = p.ct.proto, p.ct.expires
		c.CtOrigSrc, c.CtOrigDst, c.CtReplSrc, c.CtReplDst = p.ct.addr[0], p.ct.addr[1], p.ct.addr[2], p.ct.addr[3]
		c.CtOrigSport, c.CtOrigDport, c.CtReplSport, c.CtReplDport = p.ct.port[0], p.ct.port[1], p.ct.port[2], p.ct.port[3]
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
//
// It plays the module's part in callouts: on BPFILTER_VERDICT_CALLOUT it
// runs the kernel extension ctx->callout (fakeExt), appends its entry to
// *trace, and runs the program again with BPFILTER_CTX_RESUME on the same
// CPU (the test's thread is pinned to CPU 0 meanwhile).
func (l *loaded) run(t testing.TB, h Hook, p *pkt) uint32 {
	t.Helper()
	return l.runTrace(t, h, p, nil)
}

func (l *loaded) runTrace(t testing.TB, h Hook, p *pkt, trace *[]int) uint32 {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, cpu0 unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	cpu0.Set(0)
	if err := unix.SchedSetaffinity(0, &cpu0); err != nil {
		t.Fatal(err)
	}
	defer unix.SchedSetaffinity(0, &old)
	v := hookCtx(h, p)
	vals := make([]bpfCtx, possibleCPUs())
	for n := 0; ; n++ {
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
		if ret != NFCallout {
			return ret
		}
		if n >= 4096 { // BPFILTER_MAX_CALLOUTS
			t.Fatalf("%v: more than 4096 callouts", p)
		}
		if err := l.objs.Ctx.Lookup(uint32(0), vals); err != nil {
			t.Fatal(err)
		}
		k := int(vals[0].Callout)
		if k >= len(l.spec.Exts) {
			t.Fatalf("%v: callout %d of %d extensions", p, k, len(l.spec.Exts))
		}
		x := l.spec.Exts[k]
		if trace != nil {
			*trace = append(*trace, x.Entry.Index)
		}
		v.Flags |= CtxResume
		v.Result = 1
		if !x.Ext.Target && !fakeExt(x.Ext, p) {
			v.Result = 0
		}
	}
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
