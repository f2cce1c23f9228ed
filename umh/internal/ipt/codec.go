package ipt

// Replace is a decoded IPT_SO_SET_REPLACE argument: the ipt_replace header
// and the validated table its entries make.
type Replace struct {
	Header ReplaceHeader
	Table  *Table
}

// Decode parses and validates an IPT_SO_SET_REPLACE argument as ip_tables'
// do_replace does before it looks the table up: CheckReplaceHeader with
// len(blob) as optlen, then Translate. Bytes after the header's size are
// ignored, as ip_tables ignores them.
func Decode(blob []byte) (*Replace, error) {
	h, err := ParseReplaceHeader(blob)
	if err != nil {
		return nil, err
	}
	if err := CheckReplaceHeader(&h, uint64(len(blob))); err != nil {
		return nil, err
	}
	t, err := Translate(&h, blob[ReplaceSize:])
	if err != nil {
		return nil, err
	}
	return &Replace{Header: h, Table: t}, nil
}

// Encode lays the request out again: for a blob that Decode accepted, the
// first ReplaceSize + Header.Size bytes of it, byte for byte.
func (r *Replace) Encode() []byte {
	return append(r.Header.Marshal(), r.Table.Encode()...)
}

// Encode lays out the entries as they were handed in (the caller's
// comefrom and counters included).
func (t *Table) Encode() []byte {
	b := make([]byte, 0, t.Size)
	for _, e := range t.Entries {
		b = e.encode(b)
	}
	return b
}
