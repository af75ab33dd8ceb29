package protocol

import "errors"

// MaxKeyLen is the longest connection key a token's key claim may name,
// in bytes.
const MaxKeyLen = 128

// ErrKey: a connection key is empty, longer than MaxKeyLen or holds a byte
// outside the key charset (see CheckKey).
var ErrKey = errors.New("protocol: invalid connection key")

// keyByte marks the bytes a key a token names may hold: ASCII letters and
// digits and - . _ ~ : @. The push API splits its keys parameter on
// commas and a query string turns "+" into a space, so the charset is
// narrower than a room id's: a key never needs escaping in a URL, a Redis
// key, a log line or a JSON string.
var keyByte = charset("-._~:@")

// CheckKey reports whether key is a valid connection key for a token to
// name: 1 to MaxKeyLen bytes, each an ASCII letter or digit or one of
// - . _ ~ : @. The keys logic generates (UUIDs) pass it. The error wraps
// ErrKey and says what is wrong without echoing the key. The same rule
// names verification keys (a token's kid).
func CheckKey(key string) error {
	return checkBytes(key, MaxKeyLen, &keyByte, ErrKey)
}
