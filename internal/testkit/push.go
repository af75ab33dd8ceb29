package testkit

import "strings"

// The answer of an accepted push: code 0 and the push's msg_id.
const (
	pushAnswerHead = `{"code":0,"message":"","data":{"msg_id":"`
	pushAnswerTail = `"}}`
)

// PushAnswerShape describes the answer PushAccepted accepts, for failure
// messages.
const PushAnswerShape = pushAnswerHead + "<32 lowercase hex digits>" + pushAnswerTail

// PushAccepted reports whether body is exactly the answer of an accepted
// push, {"code":0,"message":"","data":{"msg_id":"<32 lowercase hex
// digits>"}}, and returns its msg_id.
func PushAccepted(body []byte) (msgID string, ok bool) {
	id, ok := strings.CutPrefix(string(body), pushAnswerHead)
	if ok {
		id, ok = strings.CutSuffix(id, pushAnswerTail)
	}
	if !ok || !IsMsgID(id) {
		return "", false
	}
	return id, true
}

// IsMsgID reports whether id has the form of a push's msg_id: 32
// lowercase hex digits.
func IsMsgID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// IsPushAnswer reports whether body is exactly the answer of an accepted
// push (see PushAccepted).
func IsPushAnswer(body []byte) bool {
	_, ok := PushAccepted(body)
	return ok
}
