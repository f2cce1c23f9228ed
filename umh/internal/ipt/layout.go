package ipt

// Sockopt numbers (IPT_BASE_CTL and following).
const (
	SoSetReplace        = 64 // IPT_SO_SET_REPLACE
	SoSetAddCounters    = 65 // IPT_SO_SET_ADD_COUNTERS
	SoGetInfo           = 64 // IPT_SO_GET_INFO
	SoGetEntries        = 65 // IPT_SO_GET_ENTRIES
	SoGetRevisionMatch  = 66 // IPT_SO_GET_REVISION_MATCH
	SoGetRevisionTarget = 67 // IPT_SO_GET_REVISION_TARGET
)

// Name lengths, including the terminating NUL.
const (
	TableMaxNameLen     = 32 // XT_TABLE_MAXNAMELEN
	FunctionMaxNameLen  = 30 // XT_FUNCTION_MAXNAMELEN
	ExtensionMaxNameLen = 29 // XT_EXTENSION_MAXNAMELEN
	IfNameSize          = 16 // IFNAMSIZ
)

// Sizes of the structures, x86_64 layout.
const (
	IPSize             = 84  // struct ipt_ip
	EntrySize          = 112 // struct ipt_entry
	CountersSize       = 16  // struct xt_counters
	GetInfoSize        = 84  // struct ipt_getinfo
	ReplaceSize        = 96  // struct ipt_replace, without entries
	GetEntriesSize     = 40  // struct ipt_get_entries, without entries
	CountersInfoSize   = 40  // struct xt_counters_info, without counters
	EntryMatchSize     = 32  // struct xt_entry_match
	EntryTargetSize    = 32  // struct xt_entry_target
	StandardTargetSize = 40  // struct xt_standard_target
	ErrorTargetSize    = 64  // struct xt_error_target
	GetRevisionSize    = 30  // struct xt_get_revision
)

// Sizes of struct ipt_standard and struct ipt_error: an entry with a
// standard or an ERROR target and no matches.
const (
	StandardEntrySize = EntrySize + StandardTargetSize
	ErrorEntrySize    = EntrySize + ErrorTargetSize
)

// Offsets inside struct ipt_entry.
const (
	entryNFCacheOff      = 84
	entryTargetOffOff    = 88
	entryNextOffOff      = 90
	entryComefromOff     = 92
	entryCountersOff     = 96 // offsetof(struct ipt_entry, counters)
	extNameOff           = 2  // u.user.name in xt_entry_match/target
	extRevisionOff       = 31 // u.user.revision
	replaceCountersPtrOf = 88 // offsetof(struct ipt_replace, counters)
)

// Align is __alignof__(struct _xt_align): XT_ALIGN rounds up to it.
const Align = 8

// XTAlign is XT_ALIGN.
func XTAlign(n int) int { return (n + Align - 1) &^ (Align - 1) }

// MaxTableSize is XT_MAX_TABLE_SIZE; xt_alloc_table_info refuses a blob of
// size bytes when size + sizeof(struct xt_table_info) reaches it.
const (
	MaxTableSize  = 512 << 20
	tableInfoSize = 64 // sizeof(struct xt_table_info) on x86_64
	intMax        = 1<<31 - 1
)

// Netfilter hooks (enum nf_inet_hooks).
const (
	HookPreRouting  = 0
	HookLocalIn     = 1
	HookForward     = 2
	HookLocalOut    = 3
	HookPostRouting = 4
	NumHooks        = 5
)

// HookNames are the builtin chain names, by hook.
var HookNames = [NumHooks]string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// FilterValidHooks is the filter table's valid_hooks.
const FilterValidHooks = 1<<HookLocalIn | 1<<HookForward | 1<<HookLocalOut

// Netfilter verdicts (NF_DROP...) and the standard target's encoding of
// them: a negative verdict v means NF verdict -v-1; a positive one is a
// jump to that byte offset in the entries blob.
const (
	NFDrop   = 0
	NFAccept = 1
	NFStolen = 2
	NFQueue  = 3
	NFRepeat = 4

	VerdictDrop   = -NFDrop - 1
	VerdictAccept = -NFAccept - 1
	VerdictQueue  = -NFQueue - 1
	VerdictReturn = -NFRepeat - 1 // XT_RETURN
)

// Bits of ipt_ip.flags.
const (
	FlagFrag = 0x01 // IPT_F_FRAG
	FlagGoto = 0x02 // IPT_F_GOTO
	FlagMask = 0x03 // IPT_F_MASK
)

// Bits of ipt_ip.invflags.
const (
	InvViaIn  = 0x01 // IPT_INV_VIA_IN
	InvViaOut = 0x02 // IPT_INV_VIA_OUT
	InvTOS    = 0x04 // IPT_INV_TOS
	InvSrcIP  = 0x08 // IPT_INV_SRCIP
	InvDstIP  = 0x10 // IPT_INV_DSTIP
	InvFrag   = 0x20 // IPT_INV_FRAG
	InvProto  = 0x40 // XT_INV_PROTO
	InvMask   = 0x7F // IPT_INV_MASK
)

// IP protocol numbers used by the extensions.
const (
	ProtoICMP    = 1
	ProtoTCP     = 6
	ProtoUDP     = 17
	ProtoDCCP    = 33
	ProtoSCTP    = 132
	ProtoUDPLite = 136
)

// Target names.
const (
	StandardTarget = ""      // XT_STANDARD_TARGET
	ErrorTarget    = "ERROR" // XT_ERROR_TARGET
)
