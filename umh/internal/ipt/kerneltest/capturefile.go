package kerneltest

import (
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Capture files hold the records of a Capture as text: '#' lines (the
// script), then one record per line, "kind opt ret errno hex", kind being
// get-in, set, get-out or old-counters.

var kindNames = map[Kind]string{GetIn: "get-in", Set: "set", GetOut: "get-out", OldCounters: "old-counters"}

// WriteCaptureFile writes recs, with script as the comment, to path.
func WriteCaptureFile(path, script string, recs []Record) error {
	var sb strings.Builder
	for _, l := range strings.Split(strings.TrimRight(script, "\n"), "\n") {
		sb.WriteString("# " + l + "\n")
	}
	for _, r := range recs {
		fmt.Fprintf(&sb, "%s %d %d %d %s\n", kindNames[r.Kind], r.Opt, r.Ret, int(r.Errno), hex.EncodeToString(r.Data))
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

// ReadCaptureFile reads a file WriteCaptureFile wrote.
func ReadCaptureFile(path string) ([]Record, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var recs []Record
	for n, line := range strings.Split(string(raw), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 4 {
			f = append(f, "")
		}
		bad := fmt.Errorf("%s:%d: bad record", path, n+1)
		if len(f) != 5 {
			return nil, bad
		}
		var r Record
		found := false
		for k, name := range kindNames {
			if name == f[0] {
				r.Kind, found = k, true
			}
		}
		opt, err1 := strconv.Atoi(f[1])
		ret, err2 := strconv.ParseInt(f[2], 10, 32)
		errno, err3 := strconv.Atoi(f[3])
		data, err4 := hex.DecodeString(f[4])
		if !found || err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			return nil, bad
		}
		r.Opt, r.Ret, r.Errno, r.Data = opt, int32(ret), unix.Errno(errno), data
		recs = append(recs, r)
	}
	return recs, nil
}
