package datapath

// Netfilter verdicts, as kmod/progctx.h defines them (pinned by
// progctx_test.go).
const (
	NFDrop        = 0      // NF_DROP, BPFILTER_VERDICT_DROP
	NFAccept      = 1      // NF_ACCEPT, BPFILTER_VERDICT_ACCEPT
	NFQueue       = 3      // NF_QUEUE, BPFILTER_VERDICT_QUEUE
	NFQueueBypass = 0x8000 // NF_VERDICT_FLAG_QUEUE_BYPASS
	NFQueueShift  = 16     // BPFILTER_VERDICT_QUEUE_SHIFT
	// NFCallout is BPFILTER_VERDICT_CALLOUT: run the kernel extension
	// ctx->callout, then run the program again with BPFILTER_CTX_RESUME.
	NFCallout = 0x10
)

// Flags of struct bpfilter_ctx.
const (
	CtxResume = 0x1 // BPFILTER_CTX_RESUME
	CtxCT     = 0x2 // BPFILTER_CTX_CT
)

// QueueVerdict is NF_QUEUE_NR(queue), with the bypass flag if asked.
func QueueVerdict(queue uint16, bypass bool) uint32 {
	v := uint32(queue)<<NFQueueShift | NFQueue
	if bypass {
		v |= NFQueueBypass
	}
	return v
}
