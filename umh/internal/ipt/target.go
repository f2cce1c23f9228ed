package ipt

import "encoding/binary"

// TargetKind tells the targets bpfilter accepts apart.
type TargetKind uint8

// Target kinds.
const (
	TargetOther    TargetKind = iota // not accepted; only in unvalidated data
	TargetStandard                   // XT_STANDARD_TARGET: a verdict or a jump
	TargetError                      // XT_ERROR_TARGET: a user chain's head, or the table's end
	TargetExt                        // another registered target (ext.go): Info holds its data
	TargetKernel                     // a kernel-hosted target (kernelext.go): Info is its *KernelExt
)

// Target is the xt_entry_target of a rule.
type Target struct {
	Name     string
	Revision uint8
	// Raw is the whole xt_entry_target, header and data, as handed in.
	Raw  []byte
	Kind TargetKind
	// Verdict is the standard target's verdict: Verdict* (< 0) or the
	// byte offset of a jump (> 0).
	Verdict int32
	// ErrorName is the ERROR target's errorname: the user chain's name.
	ErrorName string
	// Info is the decoded data of a validated TargetExt (*NFQ) or
	// TargetKernel (*KernelExt).
	Info any

	ext *extension // set by validation
}

// Size is u.target_size.
func (t *Target) Size() int { return int(binary.LittleEndian.Uint16(t.Raw)) }

// Data is the target data, after the header.
func (t *Target) Data() []byte { return t.Raw[EntryTargetSize:] }

// IsJump reports whether t is a standard target that jumps (or goes) to
// another rule.
func (t *Target) IsJump() bool { return t.Kind == TargetStandard && t.Verdict >= 0 }

// NewStandardTarget is a standard target as libiptc builds it: target_size
// XT_ALIGN(sizeof(struct xt_standard_target)), the name and revision field
// zeroed, the verdict, zero padding.
func NewStandardTarget(verdict int32) Target {
	raw := make([]byte, StandardTargetSize)
	binary.LittleEndian.PutUint16(raw, StandardTargetSize)
	binary.LittleEndian.PutUint32(raw[EntryTargetSize:], uint32(verdict))
	return Target{Name: StandardTarget, Raw: raw, Kind: TargetStandard, Verdict: verdict}
}

// NewErrorTarget is an ERROR target as libiptc builds it for a user
// chain's head (errorname = chain name) or for the end of the table
// (errorname "ERROR").
func NewErrorTarget(errorName string) Target {
	raw := make([]byte, ErrorTargetSize)
	binary.LittleEndian.PutUint16(raw, ErrorTargetSize)
	putName(raw[extNameOff:extRevisionOff], ErrorTarget)
	putName(raw[EntryTargetSize:EntryTargetSize+FunctionMaxNameLen], errorName)
	return Target{Name: ErrorTarget, Raw: raw, Kind: TargetError, ErrorName: cstr(raw[EntryTargetSize : EntryTargetSize+FunctionMaxNameLen])}
}

// decodeTarget reads the target raw (target_size bytes, at least
// EntryTargetSize), which starts the entry's tail (target_offset to
// next_offset). As in ip_tables, the name alone makes a standard or ERROR
// target, and the verdict or errorname is read from the tail, even when
// target_size is too small to hold it (check_target refuses that later,
// after mark_source_chains has used the verdict).
func decodeTarget(raw, tail []byte) Target {
	t := Target{Name: cstr(raw[extNameOff:extRevisionOff]), Revision: raw[extRevisionOff], Raw: raw}
	switch {
	case cstrEq(raw[extNameOff:], StandardTarget):
		t.Kind = TargetStandard
		if len(tail) >= EntryTargetSize+4 {
			t.Verdict = int32(binary.LittleEndian.Uint32(tail[EntryTargetSize:]))
		}
	case cstrEq(raw[extNameOff:], ErrorTarget):
		t.Kind = TargetError
		if len(tail) >= EntryTargetSize+FunctionMaxNameLen {
			t.ErrorName = cstr(tail[EntryTargetSize : EntryTargetSize+FunctionMaxNameLen])
		}
	}
	return t
}

// VerdictName is the iptables name of a negative standard verdict:
// ACCEPT, DROP, QUEUE, RETURN; "" for anything else.
func VerdictName(v int32) string {
	switch v {
	case VerdictAccept:
		return "ACCEPT"
	case VerdictDrop:
		return "DROP"
	case VerdictQueue:
		return "QUEUE"
	case VerdictReturn:
		return "RETURN"
	}
	return ""
}

// verdictOK is verdict_ok: a jump (> 0), RETURN, ACCEPT, DROP or QUEUE.
func verdictOK(v int32) bool {
	switch {
	case v > 0:
		return true
	case v == VerdictReturn, v == VerdictAccept, v == VerdictDrop, v == VerdictQueue:
		return true
	}
	return false
}
