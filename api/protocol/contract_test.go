package protocol

import (
	"testing"

	"github.com/goim/goim/internal/prototest"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestContract pins goim.protocol: Proto is goim v2's (its field numbers
// are the job–comet wire), Position is goim's. Change neither; add fields
// with new numbers and list them here.
func TestContract(t *testing.T) {
	messages := []prototest.Message{
		{Msg: &Proto{}, FullName: "goim.protocol.Proto", Fields: []prototest.Field{
			{Name: "ver", Number: 1, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
			{Name: "op", Number: 2, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
			{Name: "seq", Number: 3, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
			{Name: "body", Number: 4, Kind: protoreflect.BytesKind, Shape: prototest.Single},
		}},
		// Added by goim: reliable delivery.
		{Msg: &Position{}, FullName: "goim.protocol.Position", Fields: []prototest.Field{
			{Name: "stream", Number: 1, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
			{Name: "epoch", Number: 2, Kind: protoreflect.Uint64Kind, Shape: prototest.Single},
			{Name: "offset", Number: 3, Kind: protoreflect.Uint64Kind, Shape: prototest.Single},
		}},
	}
	prototest.CheckFile(t, File_api_protocol_protocol_proto, "goim.protocol", messages)
	for _, m := range messages {
		prototest.CheckMessage(t, m)
	}
}
