package comet

import (
	"testing"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/prototest"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The goim.comet contract: goim v2's names and field numbers plus the fields
// goim added. Changing any entry here is a wire or API break for deployed
// comets and jobs; add new fields with new numbers and list them here.

const (
	protoFullName    protoreflect.FullName = "goim.protocol.Proto"
	positionFullName protoreflect.FullName = "goim.protocol.Position"
)

func TestContract(t *testing.T) {
	prototest.Contract{
		File:    File_api_comet_comet_proto,
		Service: "goim.comet.Comet",
		Methods: []prototest.Method{
			{Name: "PushMsg", Input: "goim.comet.PushMsgReq", Output: "goim.comet.PushMsgReply", GRPCMethod: Comet_PushMsg_FullMethodName}, // a goim v2 comet replies with all counts zero
			{Name: "Broadcast", Input: "goim.comet.BroadcastReq", Output: "goim.comet.BroadcastReply", GRPCMethod: Comet_Broadcast_FullMethodName},
			{Name: "BroadcastRoom", Input: "goim.comet.BroadcastRoomReq", Output: "goim.comet.BroadcastRoomReply", GRPCMethod: Comet_BroadcastRoom_FullMethodName},
			{Name: "Rooms", Input: "goim.comet.RoomsReq", Output: "goim.comet.RoomsReply", GRPCMethod: Comet_Rooms_FullMethodName},
		},
		Messages: []prototest.Message{
			{Msg: &PushMsgReq{}, FullName: "goim.comet.PushMsgReq", Fields: []prototest.Field{
				{Name: "keys", Number: 1, Kind: protoreflect.StringKind, Shape: prototest.Repeated},
				{Name: "proto", Number: 2, Kind: protoreflect.MessageKind, Shape: prototest.Single, Ref: protoFullName},
				{Name: "protoOp", Number: 3, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "msg_id", Number: 4, Kind: protoreflect.StringKind, Shape: prototest.Single},                              // added by goim
				{Name: "positions", Number: 5, Kind: protoreflect.MessageKind, Shape: prototest.Repeated, Ref: positionFullName}, // added by goim
			}},
			{Msg: &PushMsgReply{}, FullName: "goim.comet.PushMsgReply", Fields: []prototest.Field{
				{Name: "delivered", Number: 1, Kind: protoreflect.Int32Kind, Shape: prototest.Single}, // added by goim
				{Name: "absent", Number: 2, Kind: protoreflect.Int32Kind, Shape: prototest.Single},    // added by goim
				{Name: "filtered", Number: 3, Kind: protoreflect.Int32Kind, Shape: prototest.Single},  // added by goim
				{Name: "dropped", Number: 4, Kind: protoreflect.Int32Kind, Shape: prototest.Single},   // added by goim
			}},
			{Msg: &BroadcastReq{}, FullName: "goim.comet.BroadcastReq", Fields: []prototest.Field{
				{Name: "protoOp", Number: 1, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "proto", Number: 2, Kind: protoreflect.MessageKind, Shape: prototest.Single, Ref: protoFullName},
				{Name: "speed", Number: 3, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
				{Name: "msg_id", Number: 4, Kind: protoreflect.StringKind, Shape: prototest.Single}, // added by goim
			}},
			{Msg: &BroadcastReply{}, FullName: "goim.comet.BroadcastReply"},
			{Msg: &BroadcastRoomReq{}, FullName: "goim.comet.BroadcastRoomReq", Fields: []prototest.Field{
				{Name: "roomID", Number: 1, Kind: protoreflect.StringKind, Shape: prototest.Single},
				{Name: "proto", Number: 2, Kind: protoreflect.MessageKind, Shape: prototest.Single, Ref: protoFullName},
				{Name: "msg_ids", Number: 3, Kind: protoreflect.StringKind, Shape: prototest.Repeated},                           // added by goim
				{Name: "positions", Number: 4, Kind: protoreflect.MessageKind, Shape: prototest.Repeated, Ref: positionFullName}, // added by goim
			}},
			{Msg: &BroadcastRoomReply{}, FullName: "goim.comet.BroadcastRoomReply"},
			{Msg: &RoomsReq{}, FullName: "goim.comet.RoomsReq"},
			{Msg: &RoomsReply{}, FullName: "goim.comet.RoomsReply", Fields: []prototest.Field{
				{Name: "rooms", Number: 1, Kind: protoreflect.BoolKind, Shape: prototest.Map, Key: protoreflect.StringKind},
			}},
		},
	}.Check(t)
}

// TestWireFormat pins exact encodings. The v2 fields encode as a goim v2
// comet or job expects; decoding the same bytes must give the message back.
func TestWireFormat(t *testing.T) {
	prototest.CheckWire(t, []prototest.WireCase{
		{
			Name: "PushMsgReq",
			Msg: &PushMsgReq{
				Keys:    []string{"a", "b"},
				Proto:   &protocol.Proto{Ver: 1, Op: 9, Body: []byte("hi")},
				ProtoOp: 9,
			},
			Want: prototest.Cat(
				[]byte{0x0a, 0x01}, []byte("a"), // keys = 1, LEN
				[]byte{0x0a, 0x01}, []byte("b"),
				[]byte{0x12, 0x08}, // proto = 2, LEN 8
				[]byte{0x08, 0x01, 0x10, 0x09, 0x22, 0x02}, []byte("hi"),
				[]byte{0x18, 0x09}, // protoOp = 3, VARINT
			),
		},
		{
			Name: "PushMsgReply",
			Msg:  &PushMsgReply{Delivered: 1, Absent: 2, Filtered: 3, Dropped: 4},
			Want: []byte{0x08, 0x01, 0x10, 0x02, 0x18, 0x03, 0x20, 0x04},
		},
		{
			Name: "PushMsgReply from v2 is empty",
			Msg:  &PushMsgReply{},
			Want: []byte{},
		},
		{
			Name: "BroadcastReq",
			Msg:  &BroadcastReq{ProtoOp: 9, Proto: &protocol.Proto{Op: 9}, Speed: 100},
			Want: []byte{0x08, 0x09, 0x12, 0x02, 0x10, 0x09, 0x18, 0x64},
		},
		{
			Name: "BroadcastRoomReq",
			Msg:  &BroadcastRoomReq{RoomID: "live://1", Proto: &protocol.Proto{Op: 9}},
			Want: prototest.Cat([]byte{0x0a, 0x08}, []byte("live://1"), []byte{0x12, 0x02, 0x10, 0x09}),
		},
		{
			Name: "RoomsReply",
			Msg:  &RoomsReply{Rooms: map[string]bool{"r": true}},
			// rooms = 1, one map entry {key = 1: "r", value = 2: true}
			Want: prototest.Cat([]byte{0x0a, 0x05, 0x0a, 0x01}, []byte("r"), []byte{0x10, 0x01}),
		},
	})
}
