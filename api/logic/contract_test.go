package logic

import (
	"testing"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/prototest"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The goim.logic contract: goim v2's names and field numbers plus the fields
// goim added. Changing any entry here is a wire or API break for deployed
// comets, logics and jobs (and for PushMsg values already in Kafka); add new
// fields with new numbers and list them here.

const (
	protoFullName    protoreflect.FullName = "goim.protocol.Proto"
	positionFullName protoreflect.FullName = "goim.protocol.Position"
	pushMsgTypeName  protoreflect.FullName = "goim.logic.PushMsg.Type"
	backoffFullName  protoreflect.FullName = "goim.logic.Backoff"
)

// TestContract also pins that PushMsg is the only message with a nested enum
// (Type, whose values TestPushMsgTypeContract pins).
func TestContract(t *testing.T) {
	prototest.Contract{
		File:    File_api_logic_logic_proto,
		Service: "goim.logic.Logic",
		Methods: []prototest.Method{
			{Name: "Connect", Input: "goim.logic.ConnectReq", Output: "goim.logic.ConnectReply", GRPCMethod: Logic_Connect_FullMethodName},
			{Name: "ConnectBatch", Input: "goim.logic.ConnectBatchReq", Output: "goim.logic.ConnectBatchReply", GRPCMethod: Logic_ConnectBatch_FullMethodName}, // added by goim
			{Name: "Disconnect", Input: "goim.logic.DisconnectReq", Output: "goim.logic.DisconnectReply", GRPCMethod: Logic_Disconnect_FullMethodName},
			{Name: "DisconnectBatch", Input: "goim.logic.DisconnectBatchReq", Output: "goim.logic.DisconnectBatchReply", GRPCMethod: Logic_DisconnectBatch_FullMethodName}, // added by goim
			{Name: "Heartbeat", Input: "goim.logic.HeartbeatReq", Output: "goim.logic.HeartbeatReply", GRPCMethod: Logic_Heartbeat_FullMethodName},
			{Name: "RenewOnline", Input: "goim.logic.OnlineReq", Output: "goim.logic.OnlineReply", GRPCMethod: Logic_RenewOnline_FullMethodName},
			{Name: "Receive", Input: "goim.logic.ReceiveReq", Output: "goim.logic.ReceiveReply", GRPCMethod: Logic_Receive_FullMethodName},
			{Name: "Nodes", Input: "goim.logic.NodesReq", Output: "goim.logic.NodesReply", GRPCMethod: Logic_Nodes_FullMethodName},
			{Name: "ReadStream", Input: "goim.logic.ReadStreamReq", Output: "goim.logic.ReadStreamReply", GRPCMethod: Logic_ReadStream_FullMethodName}, // added by goim
			{Name: "Ack", Input: "goim.logic.AckReq", Output: "goim.logic.AckReply", GRPCMethod: Logic_Ack_FullMethodName},                             // added by goim
			{Name: "Defer", Input: "goim.logic.DeferReq", Output: "goim.logic.DeferReply", GRPCMethod: Logic_Defer_FullMethodName},                     // added by goim
		},
		Messages: []prototest.Message{
			{Msg: &PushMsg{}, FullName: "goim.logic.PushMsg", Enums: []protoreflect.Name{"Type"}, Fields: []prototest.Field{
				{Name: "type", Number: 1, Kind: protoreflect.EnumKind, Shape: prototest.Single, Ref: pushMsgTypeName},
				{Name: "operation", Number: 2, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "speed", Number: 3, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "server", Number: 4, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "room", Number: 5, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "keys", Number: 6, Kind: protoreflect.StringKind, Shape: prototest.Repeated},
				{Name: "msg", Number: 7, Kind: protoreflect.BytesKind, Shape: prototest.Single},
				{Name: "msg_id", Number: 8, Kind: protoreflect.StringKind, Shape: prototest.Single},                              // added by goim
				{Name: "positions", Number: 9, Kind: protoreflect.MessageKind, Shape: prototest.Repeated, Ref: positionFullName}, // added by goim
				{Name: "mids", Number: 10, Kind: protoreflect.Int64Kind, Shape: prototest.Repeated},                              // added by goim
			}},
			{Msg: &ConnectReq{}, FullName: "goim.logic.ConnectReq", Fields: []prototest.Field{
				{Name: "server", Number: 1, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "cookie", Number: 2, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "token", Number: 3, Kind: protoreflect.BytesKind, Shape: prototest.Single},
				{Name: "conn_id", Number: 4, Kind: protoreflect.Uint64Kind, Shape: prototest.Single}, // added by goim
			}},
			{Msg: &ConnectReply{}, FullName: "goim.logic.ConnectReply", Fields: []prototest.Field{
				{Name: "mid", Number: 1, Kind: protoreflect.Int64Kind, Shape: prototest.Single},
				{Name: "key", Number: 2, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "roomID", Number: 3, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "accepts", Number: 4, Kind: protoreflect.Int32Kind, Shape: prototest.Repeated},
				{Name: "heartbeat", Number: 5, Kind: protoreflect.Int64Kind, Shape: prototest.Single},
				{Name: "rooms", Number: 6, Kind: protoreflect.StringKind, Shape: prototest.Repeated},                            // added by goim
				{Name: "rooms_limited", Number: 7, Kind: protoreflect.BoolKind, Shape: prototest.Single},                        // added by goim
				{Name: "auth_reply", Number: 8, Kind: protoreflect.BytesKind, Shape: prototest.Single},                          // added by goim
				{Name: "reliable", Number: 9, Kind: protoreflect.BoolKind, Shape: prototest.Single},                             // added by goim
				{Name: "streams", Number: 10, Kind: protoreflect.MessageKind, Shape: prototest.Repeated, Ref: positionFullName}, // added by goim
				{Name: "since", Number: 11, Kind: protoreflect.MessageKind, Shape: prototest.Repeated, Ref: positionFullName},   // added by goim
			}},
			// Added by goim.
			{Msg: &ConnectBatchReq{}, FullName: "goim.logic.ConnectBatchReq", Fields: []prototest.Field{
				{Name: "reqs", Number: 1, Kind: protoreflect.MessageKind, Shape: prototest.Repeated, Ref: "goim.logic.ConnectReq"},
			}},
			{Msg: &ConnectResult{}, FullName: "goim.logic.ConnectResult", Fields: []prototest.Field{
				{Name: "reply", Number: 1, Kind: protoreflect.MessageKind, Shape: prototest.Single, Ref: "goim.logic.ConnectReply"},
				{Name: "code", Number: 2, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "message", Number: 3, Kind: protoreflect.StringKind, Shape: prototest.Single},
			}},
			{Msg: &ConnectBatchReply{}, FullName: "goim.logic.ConnectBatchReply", Fields: []prototest.Field{
				{Name: "results", Number: 1, Kind: protoreflect.MessageKind, Shape: prototest.Repeated, Ref: "goim.logic.ConnectResult"},
			}},
			{Msg: &DisconnectBatchReq{}, FullName: "goim.logic.DisconnectBatchReq", Fields: []prototest.Field{
				{Name: "reqs", Number: 1, Kind: protoreflect.MessageKind, Shape: prototest.Repeated, Ref: "goim.logic.DisconnectReq"},
			}},
			{Msg: &DisconnectResult{}, FullName: "goim.logic.DisconnectResult", Fields: []prototest.Field{
				{Name: "has", Number: 1, Kind: protoreflect.BoolKind, Shape: prototest.Single},
				{Name: "code", Number: 2, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "message", Number: 3, Kind: protoreflect.StringKind, Shape: prototest.Single},
			}},
			{Msg: &DisconnectBatchReply{}, FullName: "goim.logic.DisconnectBatchReply", Fields: []prototest.Field{
				{Name: "results", Number: 1, Kind: protoreflect.MessageKind, Shape: prototest.Repeated, Ref: "goim.logic.DisconnectResult"},
			}},
			{Msg: &DisconnectReq{}, FullName: "goim.logic.DisconnectReq", Fields: []prototest.Field{
				{Name: "mid", Number: 1, Kind: protoreflect.Int64Kind, Shape: prototest.Single},
				{Name: "key", Number: 2, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "server", Number: 3, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "conn_id", Number: 4, Kind: protoreflect.Uint64Kind, Shape: prototest.Single}, // added by goim
			}},
			{Msg: &DisconnectReply{}, FullName: "goim.logic.DisconnectReply", Fields: []prototest.Field{
				{Name: "has", Number: 1, Kind: protoreflect.BoolKind, Shape: prototest.Single},
			}},
			{Msg: &HeartbeatReq{}, FullName: "goim.logic.HeartbeatReq", Fields: []prototest.Field{
				{Name: "mid", Number: 1, Kind: protoreflect.Int64Kind, Shape: prototest.Single},
				{Name: "key", Number: 2, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "server", Number: 3, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "conn_id", Number: 4, Kind: protoreflect.Uint64Kind, Shape: prototest.Single}, // added by goim
			}},
			{Msg: &HeartbeatReply{}, FullName: "goim.logic.HeartbeatReply"},
			{Msg: &OnlineReq{}, FullName: "goim.logic.OnlineReq", Fields: []prototest.Field{
				{Name: "server", Number: 1, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "roomCount", Number: 2, Kind: protoreflect.Int32Kind, Shape: prototest.Map, Key: protoreflect.StringKind},
				{Name: "conn_count", Number: 3, Kind: protoreflect.Int64Kind, Shape: prototest.Single}, // added by goim
				{Name: "ip_count", Number: 4, Kind: protoreflect.Int64Kind, Shape: prototest.Single},   // added by goim
				{Name: "draining", Number: 5, Kind: protoreflect.BoolKind, Shape: prototest.Single},    // added by goim
			}},
			{Msg: &OnlineReply{}, FullName: "goim.logic.OnlineReply", Fields: []prototest.Field{
				{Name: "allRoomCount", Number: 1, Kind: protoreflect.Int32Kind, Shape: prototest.Map, Key: protoreflect.StringKind},
				{Name: "epoch", Number: 2, Kind: protoreflect.StringKind, Shape: prototest.Single}, // added by goim
			}},
			{Msg: &ReceiveReq{}, FullName: "goim.logic.ReceiveReq", Fields: []prototest.Field{
				{Name: "mid", Number: 1, Kind: protoreflect.Int64Kind, Shape: prototest.Single},
				{Name: "proto", Number: 2, Kind: protoreflect.MessageKind, Shape: prototest.Single, Ref: protoFullName},
			}},
			{Msg: &ReceiveReply{}, FullName: "goim.logic.ReceiveReply"},
			{Msg: &NodesReq{}, FullName: "goim.logic.NodesReq", Fields: []prototest.Field{
				{Name: "platform", Number: 1, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "clientIP", Number: 2, Kind: protoreflect.StringKind, Shape: prototest.Single},
			}},
			{Msg: &NodesReply{}, FullName: "goim.logic.NodesReply", Fields: []prototest.Field{
				{Name: "domain", Number: 1, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "tcp_port", Number: 2, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "ws_port", Number: 3, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "wss_port", Number: 4, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "heartbeat", Number: 5, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "nodes", Number: 6, Kind: protoreflect.StringKind, Shape: prototest.Repeated},
				{Name: "backoff", Number: 7, Kind: protoreflect.MessageKind, Shape: prototest.Single, Ref: backoffFullName},
				{Name: "heartbeat_max", Number: 8, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
			}},
			{Msg: &Backoff{}, FullName: backoffFullName, Fields: []prototest.Field{
				{Name: "max_delay", Number: 1, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "base_delay", Number: 2, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "factor", Number: 3, Kind: protoreflect.FloatKind, Shape: prototest.Single},
				{Name: "jitter", Number: 4, Kind: protoreflect.FloatKind, Shape: prototest.Single},
			}},
			// Added by goim: reliable delivery.
			{Msg: &ReadStreamReq{}, FullName: "goim.logic.ReadStreamReq", Fields: []prototest.Field{
				{Name: "stream", Number: 1, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "mid", Number: 2, Kind: protoreflect.Int64Kind, Shape: prototest.Single},
				{Name: "key", Number: 3, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "room", Number: 4, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "epoch", Number: 5, Kind: protoreflect.Uint64Kind, Shape: prototest.Single},
				{Name: "after", Number: 6, Kind: protoreflect.Uint64Kind, Shape: prototest.Single},
				{Name: "limit", Number: 7, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
			}},
			{Msg: &StreamEntry{}, FullName: "goim.logic.StreamEntry", Fields: []prototest.Field{
				{Name: "offset", Number: 1, Kind: protoreflect.Uint64Kind, Shape: prototest.Single},
				{Name: "msg_id", Number: 2, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "op", Number: 3, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "body", Number: 4, Kind: protoreflect.BytesKind, Shape: prototest.Single},
			}},
			{Msg: &ReadStreamReply{}, FullName: "goim.logic.ReadStreamReply", Fields: []prototest.Field{
				{Name: "epoch", Number: 1, Kind: protoreflect.Uint64Kind, Shape: prototest.Single},
				{Name: "top", Number: 2, Kind: protoreflect.Uint64Kind, Shape: prototest.Single},
				{Name: "recovered", Number: 3, Kind: protoreflect.BoolKind, Shape: prototest.Single},
				{Name: "entries", Number: 4, Kind: protoreflect.MessageKind, Shape: prototest.Repeated, Ref: "goim.logic.StreamEntry"},
			}},
			{Msg: &AckReq{}, FullName: "goim.logic.AckReq", Fields: []prototest.Field{
				{Name: "server", Number: 1, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "acks", Number: 2, Kind: protoreflect.MessageKind, Shape: prototest.Repeated, Ref: "goim.logic.Ack"},
			}},
			{Msg: &Ack{}, FullName: "goim.logic.Ack", Fields: []prototest.Field{
				{Name: "msg_id", Number: 1, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "mid", Number: 2, Kind: protoreflect.Int64Kind, Shape: prototest.Single},
				{Name: "key", Number: 3, Kind: protoreflect.StringKind, Shape: prototest.Single},
			}},
			{Msg: &AckReply{}, FullName: "goim.logic.AckReply"},
			{Msg: &DeferReq{}, FullName: "goim.logic.DeferReq", Fields: []prototest.Field{
				{Name: "deferred", Number: 1, Kind: protoreflect.MessageKind, Shape: prototest.Repeated, Ref: "goim.logic.Ack"},
			}},
			{Msg: &DeferReply{}, FullName: "goim.logic.DeferReply"},
		},
	}.Check(t)
}

func TestPushMsgTypeContract(t *testing.T) {
	ed := PushMsg_PUSH.Descriptor()
	if ed.FullName() != pushMsgTypeName {
		t.Fatalf("enum = %q, want %q", ed.FullName(), pushMsgTypeName)
	}
	if got := (&PushMsg{}).ProtoReflect().Descriptor().Enums().ByName("Type"); got != ed {
		t.Fatalf("PushMsg.Type is not the enum nested in PushMsg")
	}
	tests := []struct {
		name   protoreflect.Name
		number protoreflect.EnumNumber
		goVal  PushMsg_Type
	}{
		{name: "PUSH", number: 0, goVal: PushMsg_PUSH},
		{name: "ROOM", number: 1, goVal: PushMsg_ROOM},
		{name: "BROADCAST", number: 2, goVal: PushMsg_BROADCAST},
	}
	if got, want := ed.Values().Len(), len(tests); got != want {
		t.Errorf("enum has %d values, want exactly %d", got, want)
	}
	for _, tc := range tests {
		t.Run(string(tc.name), func(t *testing.T) {
			v := ed.Values().ByName(tc.name)
			if v == nil {
				t.Fatalf("value %s missing", tc.name)
			}
			if v.Number() != tc.number {
				t.Errorf("number = %d, want %d", v.Number(), tc.number)
			}
			if tc.goVal.Number() != tc.number {
				t.Errorf("Go constant = %d, want %d", tc.goVal.Number(), tc.number)
			}
		})
	}
}

// TestWireFormat pins exact encodings. The v2 fields encode as a goim v2
// comet, logic or job expects; decoding the same bytes must give the message
// back.
func TestWireFormat(t *testing.T) {
	prototest.CheckWire(t, []prototest.WireCase{
		{
			Name: "PushMsg room",
			Msg:  &PushMsg{Type: PushMsg_ROOM, Room: "live://1"},
			// type = 1 VARINT 1 (ROOM), room = 5 LEN 8
			Want: prototest.Cat([]byte{0x08, 0x01, 0x2a, 0x08}, []byte("live://1")),
		},
		{
			Name: "PushMsg keys",
			Msg: &PushMsg{
				Type:      PushMsg_PUSH,
				Operation: 1000,
				Server:    "c1",
				Keys:      []string{"k"},
				Msg:       []byte("m"),
				MsgId:     "id",
			},
			Want: prototest.Cat(
				// type PUSH is the zero value and is not written
				[]byte{0x10, 0xe8, 0x07},         // operation = 2, 1000
				[]byte{0x22, 0x02}, []byte("c1"), // server = 4
				[]byte{0x32, 0x01}, []byte("k"), // keys = 6
				[]byte{0x3a, 0x01}, []byte("m"), // msg = 7
				[]byte{0x42, 0x02}, []byte("id"), // msg_id = 8
			),
		},
		{
			Name: "PushMsg broadcast",
			Msg:  &PushMsg{Type: PushMsg_BROADCAST, Operation: 1000, Speed: 300},
			Want: []byte{0x08, 0x02, 0x10, 0xe8, 0x07, 0x18, 0xac, 0x02},
		},
		{
			Name: "ConnectReq",
			Msg:  &ConnectReq{Server: "c1", Token: []byte(`{"mid":1}`)},
			Want: prototest.Cat([]byte{0x0a, 0x02}, []byte("c1"), []byte{0x1a, 0x09}, []byte(`{"mid":1}`)),
		},
		{
			Name: "ConnectReply",
			Msg: &ConnectReply{
				Mid:       1,
				Key:       "k",
				RoomID:    "live://1",
				Accepts:   []int32{1000, 1001},
				Heartbeat: 240_000_000_000, // 240s in nanoseconds
			},
			Want: prototest.Cat(
				[]byte{0x08, 0x01},
				[]byte{0x12, 0x01}, []byte("k"),
				[]byte{0x1a, 0x08}, []byte("live://1"),
				[]byte{0x22, 0x04, 0xe8, 0x07, 0xe9, 0x07}, // accepts = 4, packed
				[]byte{0x28, 0x80, 0xc0, 0xf5, 0x88, 0xfe, 0x06},
			),
		},
		{
			Name: "DisconnectReply",
			Msg:  &DisconnectReply{Has: true},
			Want: []byte{0x08, 0x01},
		},
		{
			Name: "OnlineReq",
			Msg: &OnlineReq{
				Server:    "c1",
				RoomCount: map[string]int32{"r": 2},
				ConnCount: 5,
				IpCount:   3,
				Draining:  true,
			},
			Want: prototest.Cat(
				[]byte{0x0a, 0x02}, []byte("c1"),
				[]byte{0x12, 0x05, 0x0a, 0x01}, []byte("r"), []byte{0x10, 0x02}, // roomCount entry
				[]byte{0x18, 0x05, 0x20, 0x03, 0x28, 0x01},
			),
		},
		{
			Name: "ReceiveReq",
			Msg:  &ReceiveReq{Mid: 7, Proto: &protocol.Proto{Ver: 1, Op: 4, Seq: 2}},
			Want: []byte{0x08, 0x07, 0x12, 0x06, 0x08, 0x01, 0x10, 0x04, 0x18, 0x02},
		},
		{
			Name: "NodesReply",
			Msg: &NodesReply{
				Domain:       "d",
				TcpPort:      3101,
				Heartbeat:    240,
				Backoff:      &Backoff{MaxDelay: 300, BaseDelay: 3, Factor: 1.6, Jitter: 0.2},
				HeartbeatMax: 2,
			},
			Want: prototest.Cat(
				[]byte{0x0a, 0x01}, []byte("d"),
				[]byte{0x10, 0x9d, 0x18}, // tcp_port = 2, 3101
				[]byte{0x28, 0xf0, 0x01}, // heartbeat = 5, 240
				[]byte{0x3a, 0x0f},       // backoff = 7, LEN 15
				[]byte{0x08, 0xac, 0x02, 0x10, 0x03},
				[]byte{0x1d, 0xcd, 0xcc, 0xcc, 0x3f}, // factor = 3, I32 1.6
				[]byte{0x25, 0xcd, 0xcc, 0x4c, 0x3e}, // jitter = 4, I32 0.2
				[]byte{0x40, 0x02},                   // heartbeat_max = 8
			),
		},
	})
}
