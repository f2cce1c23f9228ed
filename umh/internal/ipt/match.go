package ipt

import "encoding/binary"

// Match is one xt_entry_match of a rule.
type Match struct {
	Name     string
	Revision uint8
	// Raw is the whole xt_entry_match, header and data, exactly as the
	// caller handed it in.
	Raw []byte
	// Info is the decoded data of a validated match: *TCP, *UDP, *ICMP,
	// *Multiport, *IPRange or *Comment, or a kernel-hosted match's
	// *KernelExt (kernelext.go).
	Info any

	ext *extension // set by validation
}

// Size is u.match_size.
func (m *Match) Size() int { return int(binary.LittleEndian.Uint16(m.Raw)) }

// Data is the match data, after the header.
func (m *Match) Data() []byte { return m.Raw[EntryMatchSize:] }

// MatchInfo is the data of a match that bpfilter can build.
type MatchInfo interface {
	// ExtName and ExtRevision name the extension.
	ExtName() string
	ExtRevision() uint8
	// Marshal is the data as iptables lays it out: sizeof(struct) bytes.
	Marshal() []byte
}

// NewMatch builds a match as iptables does (xtables_calloc'd, so padding
// and the rest of the name field are zero): match_size is
// XT_ALIGN(sizeof(struct xt_entry_match)) + XT_ALIGN(data size).
func NewMatch(info MatchInfo) Match {
	data := info.Marshal()
	raw := make([]byte, EntryMatchSize+XTAlign(len(data)))
	binary.LittleEndian.PutUint16(raw, uint16(len(raw)))
	putName(raw[extNameOff:extRevisionOff], info.ExtName())
	raw[extRevisionOff] = info.ExtRevision()
	copy(raw[EntryMatchSize:], data)
	return Match{Name: info.ExtName(), Revision: info.ExtRevision(), Raw: raw, Info: decodeMatchInfo(info.ExtName(), raw[EntryMatchSize:])}
}

func decodeMatchInfo(name string, data []byte) any {
	for i := range matches {
		if matches[i].name == name && len(data) >= matches[i].size {
			return matches[i].decode(data)
		}
	}
	return nil
}

func port16(b []byte) uint16       { return binary.LittleEndian.Uint16(b) }
func putPort16(b []byte, v uint16) { binary.LittleEndian.PutUint16(b, v) }
