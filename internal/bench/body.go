package bench

import (
	"bytes"
	"fmt"
	"strconv"
)

// The push body the load tool sends and its clients parse: five fields
// separated by single spaces, then optional padding.
//
//	gb1 <run> <stream> <seq> <sent_unix_ns>[ <padding>]
//
// run names one load run ([A-Za-z0-9_.-], 1..64 bytes): bodies of another
// run, or that do not parse, are counted as foreign and otherwise ignored.
// stream is what the sequence numbers count in: "room:<type>://<id>",
// "mid:<mid>", "key:<key>" or "all:<op>" (printable ASCII, no space,
// 1..256 bytes). seq starts at 1 and grows by one per push of the stream.
// sent is the pusher's wall clock when it assigned seq, so push→receive
// latency is exact only when pusher and receiver share a clock (the same
// machine). The padding, a space and 'x's up to the requested size, is
// ignored by the parser.
const (
	bodyMagic = "gb1"
	// MaxBodySize is the largest body the tool sends: logic's default
	// max_body and what every goim v2 client accepts.
	MaxBodySize = 4096
	// DefaultBodySize is the default -size.
	DefaultBodySize = 64
	// MaxRunLen and MaxStreamLen bound the run and stream fields.
	MaxRunLen    = 64
	MaxStreamLen = 256
)

// Body is a parsed push body. Run and Stream alias the parsed bytes.
type Body struct {
	Run    []byte
	Stream []byte
	Seq    uint64
	Sent   int64 // Unix ns
}

// AppendBody appends the body of push seq of stream, sent at sent (Unix ns),
// to dst, padded to size bytes when it is shorter (never truncated). run
// and stream must be valid (ValidRun, ValidStream).
func AppendBody(dst []byte, run, stream string, seq uint64, sent int64, size int) []byte {
	start := len(dst)
	dst = append(dst, bodyMagic...)
	dst = append(dst, ' ')
	dst = append(dst, run...)
	dst = append(dst, ' ')
	dst = append(dst, stream...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, sent, 10)
	if n := len(dst) - start; n+1 < size {
		dst = append(dst, ' ')
		for range size - n - 1 {
			dst = append(dst, 'x')
		}
	}
	return dst
}

// ParseBody parses a push body. It allocates nothing on success or for a
// body that is not the tool's (errNotBench); Run and Stream alias b.
func ParseBody(b []byte) (Body, error) {
	var out Body
	rest, ok := bytes.CutPrefix(b, []byte(bodyMagic+" "))
	if !ok {
		return out, errNotBench
	}
	var f [4][]byte
	for i := range f {
		if i < len(f)-1 {
			j := bytes.IndexByte(rest, ' ')
			if j < 0 {
				return out, fmt.Errorf("%w: %d fields, want 5", errBadBody, i+1)
			}
			f[i], rest = rest[:j], rest[j+1:]
			continue
		}
		// The last field ends at a space (padding follows) or at the end.
		if j := bytes.IndexByte(rest, ' '); j >= 0 {
			f[i] = rest[:j]
		} else {
			f[i] = rest
		}
	}
	if !validRun(f[0]) {
		return out, fmt.Errorf("%w: run %q", errBadBody, f[0])
	}
	if !validStream(f[1]) {
		return out, fmt.Errorf("%w: stream %q", errBadBody, f[1])
	}
	seq, ok := parseDigits(f[2])
	if !ok || seq == 0 {
		return out, fmt.Errorf("%w: seq %q", errBadBody, f[2])
	}
	sent, ok := parseDigits(f[3])
	if !ok || sent > 1<<63-1 {
		return out, fmt.Errorf("%w: sent %q", errBadBody, f[3])
	}
	out.Run, out.Stream, out.Seq, out.Sent = f[0], f[1], seq, int64(sent)
	return out, nil
}

// parseDigits parses 1..20 decimal digits into a uint64 without
// allocating; it reports false on anything else or on overflow.
func parseDigits(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// ValidRun reports whether s can be a run id.
func ValidRun(s string) bool { return validRun([]byte(s)) }

func validRun(b []byte) bool {
	if len(b) == 0 || len(b) > MaxRunLen {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

// ValidStream reports whether s can be a stream id.
func ValidStream(s string) bool { return validStream([]byte(s)) }

func validStream(b []byte) bool {
	if len(b) == 0 || len(b) > MaxStreamLen {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// Stream ids of the push kinds.

// RoomStream is the stream of pushes to room ("type://id").
func RoomStream(room string) string { return "room:" + room }

// MidStream is the stream of pushes to user mid.
func MidStream(mid int64) string { return "mid:" + strconv.FormatInt(mid, 10) }

// KeyStream is the stream of pushes to connection key.
func KeyStream(key string) string { return "key:" + key }

// AllStream is the stream of broadcasts with operation op.
func AllStream(op int32) string { return "all:" + strconv.FormatInt(int64(op), 10) }
