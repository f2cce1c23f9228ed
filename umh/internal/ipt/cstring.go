package ipt

import "bytes"

// cstr is the C string at the start of b: up to the first NUL, or all of b
// when there is none.
func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// cstrEq is strcmp(b, s) == 0 for a field b that may lack a NUL: b equals s
// only if it holds s followed by a NUL.
func cstrEq(b []byte, s string) bool {
	return len(b) > len(s) && string(b[:len(s)]) == s && b[len(s)] == 0
}

// strnlen is strnlen(b, len(b)).
func strnlen(b []byte) int {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return i
	}
	return len(b)
}

// TableName is the table name the kernel looks up for a name field of
// XT_TABLE_MAXNAMELEN bytes: ip_tables forces the last byte to NUL first.
func TableName(field []byte) string {
	if len(field) > TableMaxNameLen {
		field = field[:TableMaxNameLen]
	}
	if len(field) == TableMaxNameLen {
		field = field[:TableMaxNameLen-1]
	}
	return cstr(field)
}

// putName writes s and a NUL into a zeroed field of n bytes; s is cut to
// n-1 bytes.
func putName(dst []byte, s string) {
	n := copy(dst[:len(dst)-1], s)
	for i := n; i < len(dst); i++ {
		dst[i] = 0
	}
}
