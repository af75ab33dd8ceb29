package protocol

import "strconv"

// Operation codes 0–17 with goim v2's numbers and names, and goim's 18–20. Business pushes use
// any other value (by convention 1000 and up). docs/protocol.md says what the
// server does with each.
const (
	// OpHandshake is reserved (never implemented in goim v2); treated as a business op.
	OpHandshake int32 = 0
	// OpHandshakeReply is reserved.
	OpHandshakeReply int32 = 1
	// OpHeartbeat (client) re-arms the session timeout.
	OpHeartbeat int32 = 2
	// OpHeartbeatReply (server) carries the room online count as a 4-byte int32.
	OpHeartbeatReply int32 = 3
	// OpSendMsg has no special meaning; treated as a business op.
	OpSendMsg int32 = 4
	// OpSendMsgReply is reserved.
	OpSendMsgReply int32 = 5
	// OpDisconnectReply is reserved.
	OpDisconnectReply int32 = 6
	// OpAuth (client) is the first frame; its body is the JSON AuthBody.
	OpAuth int32 = 7
	// OpAuthReply (server) acknowledges a successful auth with an empty body.
	OpAuthReply int32 = 8
	// OpRaw (server) is a batch carrier: its body is complete inner frames
	// back to back. TCP clients receive the inner frames without the carrier
	// header; WebSocket clients receive the carrier as one message.
	OpRaw int32 = 9
	// OpProtoReady was a server-internal sentinel in goim v2; unused on the wire.
	OpProtoReady int32 = 10
	// OpProtoFinish was a server-internal sentinel in goim v2; unused on the wire.
	OpProtoFinish int32 = 11
	// OpChangeRoom (client): body is the new room id; empty leaves the room.
	OpChangeRoom int32 = 12
	// OpChangeRoomReply (server) echoes the request body.
	OpChangeRoomReply int32 = 13
	// OpSub (client): body is comma-separated decimal ops to start watching.
	OpSub int32 = 14
	// OpSubReply (server) echoes the request body.
	OpSubReply int32 = 15
	// OpUnsub (client): body is comma-separated decimal ops to stop watching.
	OpUnsub int32 = 16
	// OpUnsubReply (server) echoes the request body.
	OpUnsubReply int32 = 17

	// Ops 18–20 are goim's reliable delivery (not in goim v2). They mean
	// what is said here only on a connection that opted in ("reliable":
	// true in its auth body); on any other connection they are business
	// ops, as in goim v2.

	// OpMessage (server) carries one push to a reliable connection: the
	// body is an envelope (AppendEnvelope) of the push's id, its stream
	// position and the push's frame.
	OpMessage int32 = 18
	// OpAck (client) acknowledges pushes: the body is one or more 16-byte
	// push ids back to back (AppendAck). No reply.
	OpAck int32 = 19
	// OpStreams (server) reports a reliable connection's streams: the body
	// is StreamsBody as JSON, sent after the auth reply and whenever a
	// stream could not be continued without a gap.
	OpStreams int32 = 20
)

var opNames = [...]string{
	"handshake", "handshake_reply", "heartbeat", "heartbeat_reply",
	"send_msg", "send_msg_reply", "disconnect_reply", "auth", "auth_reply",
	"raw", "proto_ready", "proto_finish", "change_room", "change_room_reply",
	"sub", "sub_reply", "unsub", "unsub_reply", "message", "ack", "streams",
}

// OpName names a protocol op (0–20) for logs; any other op is "op_<n>".
// Business ops are unbounded, so do not use the result as a metric label
// without bucketing them.
func OpName(op int32) string {
	if op >= 0 && int(op) < len(opNames) {
		return opNames[op]
	}
	return "op_" + strconv.FormatInt(int64(op), 10)
}
