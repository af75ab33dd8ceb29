package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// AuthBody is the JSON body of an auth frame (op 7): goim v2's fields plus
// token. Unknown fields are ignored and missing ones take zero values, as in
// goim v2; field names match case-insensitively (encoding/json's rule).
type AuthBody struct {
	// Mid is the user id; 0 or negative means anonymous. With signed auth
	// logic takes the user id from the token and ignores this field.
	Mid int64 `json:"mid"`
	// Key is the connection key the client asks for; empty lets logic pick.
	Key string `json:"key"`
	// RoomID is the room to join, "type://id"; empty joins none.
	RoomID string `json:"room_id"`
	// Platform is "web", "android", "ios" or the like; informational.
	Platform string `json:"platform"`
	// Accepts lists the ops this connection receives for key, user and
	// broadcast pushes (room pushes are not filtered).
	Accepts []int32 `json:"accepts"`
	// Token is the signed credential logic verifies (added by goim; goim v2
	// clients do not send it).
	Token string `json:"token,omitempty"`
	// Reliable opts the connection in to reliable delivery: pushes arrive
	// as op 18 envelopes with their id and stream position, op 19 acks
	// them, and op 20 reports the streams (added by goim).
	Reliable bool `json:"reliable,omitempty"`
	// Since is where the client's view of each stream ended, for a
	// reliable connection that recovers what it missed (added by goim).
	Since *Since `json:"since,omitempty"`
}

// Since is the last position a client saw in each of its streams; a nil
// field is a stream it has not seen.
type Since struct {
	User *SincePos `json:"user,omitempty"`
	Key  *SincePos `json:"key,omitempty"`
	Room *SincePos `json:"room,omitempty"`
}

// SincePos is one stream's last position as a client holds it: the epoch
// as 16 hex digits (FormatEpoch) and the offset of the last message seen.
type SincePos struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// ParseAuthBody parses an auth frame body. Anything but one JSON object whose
// fields have the types above is an error wrapping ErrAuthBody that says what
// was wrong and where.
func ParseAuthBody(b []byte) (AuthBody, error) {
	var a AuthBody
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 {
		return a, fmt.Errorf("%w: empty body", ErrAuthBody)
	}
	if t[0] != '{' {
		return a, fmt.Errorf("%w: not a JSON object", ErrAuthBody)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return AuthBody{}, fmt.Errorf("%w: %s", ErrAuthBody, describeJSONError(err))
	}
	if err := a.Since.check(); err != nil {
		return AuthBody{}, fmt.Errorf("%w: since.%w", ErrAuthBody, err)
	}
	return a, nil
}

func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field != "" {
			return fmt.Sprintf("field %q: %s is not a %s", typeErr.Field, typeErr.Value, typeErr.Type)
		}
		return fmt.Sprintf("%s is not a %s", typeErr.Value, typeErr.Type)
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return fmt.Sprintf("not JSON at byte %d: %s", syntaxErr.Offset, syntaxErr.Error())
	}
	return err.Error()
}
