package dao

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// NewMsgID returns a new push id (PushMsg.msg_id): 32 lowercase hex digits
// encoding 16 bytes, the first 6 the milliseconds since the Unix epoch
// (big-endian, enough until the year 10889), the other 10 from
// crypto/rand, e.g. "019b7d2a1c409f3e6a0b5d7c21e48a93".
//
// Ids sort, as strings, in the order they were made, to the millisecond
// (within one millisecond their order is random), and the time is
// readable from the id. Uniqueness rests on the 80 random bits, with no
// coordination between logic instances: n ids made in the same
// millisecond collide with probability below n²/2^81 (for a million in
// one millisecond, about 4e-13).
func NewMsgID() string {
	var b [16]byte
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(time.Now().UnixMilli()))
	copy(b[:6], ms[2:])
	_, _ = rand.Read(b[6:]) // never fails (Go >= 1.24 crashes the program instead)
	return hex.EncodeToString(b[:])
}
