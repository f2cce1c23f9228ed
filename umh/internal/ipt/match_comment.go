package ipt

// struct xt_comment_info (xt_comment.h).
const commentSize = 256 // XT_MAX_COMMENT_LEN

// Comment is struct xt_comment_info, the data of match "comment"
// revision 0. The kernel does not require a NUL; Text is the C string.
type Comment struct {
	Text string
}

// ExtName is "comment".
func (*Comment) ExtName() string { return "comment" }

// ExtRevision is 0.
func (*Comment) ExtRevision() uint8 { return 0 }

// Marshal lays out struct xt_comment_info; the text is cut to 255 bytes.
func (c *Comment) Marshal() []byte {
	b := make([]byte, commentSize)
	putName(b, c.Text)
	return b
}

func decodeCommentAny(b []byte) any { return &Comment{Text: cstr(b[:commentSize])} }
