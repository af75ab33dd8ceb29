package prototest_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/prototest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// recorder stands in for a *testing.T: it records Errorf and Fatalf instead
// of failing, so a test can assert that a helper fails when it should. Fatalf
// does not stop the goroutine; the helpers return after calling it. Any other
// testing.TB method panics on the nil embedded value.
type recorder struct {
	testing.TB
	errors []string
	fatal  bool
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = true
	r.Errorf(format, args...)
}

// selfCase runs one helper call against a recorder. want is a substring that
// some recorded failure must contain, or empty when the call must pass.
type selfCase struct {
	name  string
	run   func(testing.TB)
	want  string
	fatal bool // the failure must be a Fatalf
}

func runSelfCases(t *testing.T, cases []selfCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			tc.run(r)
			if tc.want == "" {
				if len(r.errors) != 0 {
					t.Fatalf("helper failed on a matching contract: %q", r.errors)
				}
				return
			}
			found := false
			for _, e := range r.errors {
				found = found || strings.Contains(e, tc.want)
			}
			if !found {
				t.Errorf("failures %q, want one containing %q", r.errors, tc.want)
			}
			if r.fatal != tc.fatal {
				t.Errorf("fatal = %v, want %v", r.fatal, tc.fatal)
			}
		})
	}
}

// The right contracts of some well-known messages.
var (
	timestampFields = []prototest.Field{
		{Name: "seconds", Number: 1, Kind: protoreflect.Int64Kind, Shape: prototest.Single},
		{Name: "nanos", Number: 2, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
	}
	structFields = []prototest.Field{
		{Name: "fields", Number: 1, Kind: protoreflect.MessageKind, Shape: prototest.Map, Key: protoreflect.StringKind, Ref: "google.protobuf.Value"},
	}
	listFields = []prototest.Field{
		{Name: "values", Number: 1, Kind: protoreflect.MessageKind, Shape: prototest.Repeated, Ref: "google.protobuf.Value"},
	}
	protoFields = []prototest.Field{
		{Name: "ver", Number: 1, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
		{Name: "op", Number: 2, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
		{Name: "seq", Number: 3, Kind: protoreflect.Int32Kind, Shape: prototest.Single},
		{Name: "body", Number: 4, Kind: protoreflect.BytesKind, Shape: prototest.Single},
	}
)

// with returns a copy of fields with fields[i] changed by edit.
func with(fields []prototest.Field, i int, edit func(*prototest.Field)) []prototest.Field {
	out := append([]prototest.Field(nil), fields...)
	edit(&out[i])
	return out
}

func checkMessage(msg proto.Message, name protoreflect.FullName, fields []prototest.Field, enums ...protoreflect.Name) func(testing.TB) {
	return func(tb testing.TB) {
		prototest.CheckMessage(tb, prototest.Message{Msg: msg, FullName: name, Fields: fields, Enums: enums})
	}
}

func TestCheckMessage(t *testing.T) {
	ts := &timestamppb.Timestamp{}
	box := dynamicpb.NewMessage(echoFile(t).Messages().ByName("Box"))
	const tsName = "google.protobuf.Timestamp"
	runSelfCases(t, []selfCase{
		{name: "timestamp matches", run: checkMessage(ts, tsName, timestampFields)},
		{name: "map matches", run: checkMessage(&structpb.Struct{}, "google.protobuf.Struct", structFields)},
		{name: "repeated matches", run: checkMessage(&structpb.ListValue{}, "google.protobuf.ListValue", listFields)},
		{name: "goim proto matches", run: checkMessage(&protocol.Proto{}, "goim.protocol.Proto", protoFields)},
		{
			name:  "wrong full name",
			run:   checkMessage(ts, "google.protobuf.Duration", timestampFields),
			want:  "full name",
			fatal: true,
		},
		{
			name: "wrong number",
			run:  checkMessage(ts, tsName, with(timestampFields, 0, func(f *prototest.Field) { f.Number = 3 })),
			want: "seconds: number = 1, want 3",
		},
		{
			name: "renumbered goim field",
			run:  checkMessage(&protocol.Proto{}, "goim.protocol.Proto", with(protoFields, 2, func(f *prototest.Field) { f.Number = 4 })),
			want: "seq: number = 3, want 4",
		},
		{
			name: "wrong name",
			run:  checkMessage(ts, tsName, with(timestampFields, 0, func(f *prototest.Field) { f.Name = "secs" })),
			want: "field secs missing",
		},
		{
			name: "wrong name is also a wrong field set",
			run:  checkMessage(ts, tsName, with(timestampFields, 0, func(f *prototest.Field) { f.Name = "secs" })),
			want: "fields = [seconds nanos]",
		},
		{
			name: "wrong kind",
			run:  checkMessage(ts, tsName, with(timestampFields, 1, func(f *prototest.Field) { f.Kind = protoreflect.Int64Kind })),
			want: "nanos: kind = int32, want int64",
		},
		{
			name: "repeated taken for single",
			run:  checkMessage(&structpb.ListValue{}, "google.protobuf.ListValue", with(listFields, 0, func(f *prototest.Field) { f.Shape = prototest.Single })),
			want: "values: cardinality = repeated, want single",
		},
		{
			name: "map taken for repeated",
			run:  checkMessage(&structpb.Struct{}, "google.protobuf.Struct", with(structFields, 0, func(f *prototest.Field) { f.Shape = prototest.Repeated })),
			want: "fields: cardinality = map, want repeated",
		},
		{
			name: "wrong map key kind",
			run:  checkMessage(&structpb.Struct{}, "google.protobuf.Struct", with(structFields, 0, func(f *prototest.Field) { f.Key = protoreflect.Int32Kind })),
			want: "fields: map key kind = string, want int32",
		},
		{
			name: "wrong message type",
			run:  checkMessage(&structpb.ListValue{}, "google.protobuf.ListValue", with(listFields, 0, func(f *prototest.Field) { f.Ref = "google.protobuf.Struct" })),
			want: `values: type = "google.protobuf.Value", want "google.protobuf.Struct"`,
		},
		{
			name: "extra field in the message",
			run:  checkMessage(ts, tsName, timestampFields[:1]),
			want: "fields = [seconds nanos], want exactly [seconds]",
		},
		{
			name: "extra field in the contract",
			run: checkMessage(ts, tsName, append(append([]prototest.Field(nil), timestampFields...),
				prototest.Field{Name: "zone", Number: 3, Kind: protoreflect.StringKind})),
			want: "field zone missing",
		},
		{
			name: "oneof fields",
			run: checkMessage(&structpb.Value{}, "google.protobuf.Value", []prototest.Field{
				{Name: "null_value", Number: 1, Kind: protoreflect.EnumKind, Ref: "google.protobuf.NullValue"},
				{Name: "number_value", Number: 2, Kind: protoreflect.DoubleKind},
				{Name: "string_value", Number: 3, Kind: protoreflect.StringKind},
				{Name: "bool_value", Number: 4, Kind: protoreflect.BoolKind},
				{Name: "struct_value", Number: 5, Kind: protoreflect.MessageKind, Ref: "google.protobuf.Struct"},
				{Name: "list_value", Number: 6, Kind: protoreflect.MessageKind, Ref: "google.protobuf.ListValue"},
			}),
			want: "message has 1 oneofs, want 0",
		},
		{
			name: "nested message",
			run:  checkMessage(box, "test.Box", nil, "Color"),
			want: "unexpected nested message test.Box.Inner",
		},
		{
			name: "nested enum not in the contract",
			run:  checkMessage(box, "test.Box", nil),
			want: "nested enums = [Color], want exactly []",
		},
		{
			name: "nested enum not in the message",
			run:  checkMessage(ts, tsName, timestampFields, "Zone"),
			want: "nested enums = [], want exactly [Zone]",
		},
	})
}

// echoFile is a small file built from a descriptor, as no well-known file
// declares a service:
//
//	package test;
//	enum Mode { OFF = 0; }
//	message Req { Mode mode = 1; }
//	message Rep {}
//	message Box { enum Color { NONE = 0; } message Inner {} }
//	service Echo {
//	  rpc Ping(Req) returns (Rep);
//	  rpc Watch(Req) returns (stream Rep);
//	}
func echoFile(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("test/echo.proto"),
		Package: proto.String("test"),
		Syntax:  proto.String("proto3"),
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name:  proto.String("Mode"),
			Value: []*descriptorpb.EnumValueDescriptorProto{{Name: proto.String("OFF"), Number: proto.Int32(0)}},
		}},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Req"), Field: []*descriptorpb.FieldDescriptorProto{{
				Name:     proto.String("mode"),
				JsonName: proto.String("mode"),
				Number:   proto.Int32(1),
				Label:    descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
				Type:     descriptorpb.FieldDescriptorProto_TYPE_ENUM.Enum(),
				TypeName: proto.String(".test.Mode"),
			}}},
			{Name: proto.String("Rep")},
			{
				Name: proto.String("Box"),
				EnumType: []*descriptorpb.EnumDescriptorProto{{
					Name:  proto.String("Color"),
					Value: []*descriptorpb.EnumValueDescriptorProto{{Name: proto.String("NONE"), Number: proto.Int32(0)}},
				}},
				NestedType: []*descriptorpb.DescriptorProto{{Name: proto.String("Inner")}},
			},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Echo"),
			Method: []*descriptorpb.MethodDescriptorProto{
				{Name: proto.String("Ping"), InputType: proto.String(".test.Req"), OutputType: proto.String(".test.Rep")},
				{Name: proto.String("Watch"), InputType: proto.String(".test.Req"), OutputType: proto.String(".test.Rep"), ServerStreaming: proto.Bool(true)},
			},
		}},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		t.Fatalf("build echo.proto: %v", err)
	}
	return fd
}

func TestCheckService(t *testing.T) {
	fd := echoFile(t)
	ping := prototest.Method{Name: "Ping", Input: "test.Req", Output: "test.Rep", GRPCMethod: "/test.Echo/Ping"}
	check := func(fd protoreflect.FileDescriptor, name protoreflect.FullName, methods ...prototest.Method) func(testing.TB) {
		return func(tb testing.TB) { prototest.CheckService(tb, fd, name, methods) }
	}
	withPing := func(edit func(*prototest.Method)) prototest.Method {
		m := ping
		edit(&m)
		return m
	}
	watch := prototest.Method{Name: "Watch", Input: "test.Req", Output: "test.Rep", GRPCMethod: "/test.Echo/Watch"}
	runSelfCases(t, []selfCase{
		{
			name:  "no service",
			run:   check(timestamppb.File_google_protobuf_timestamp_proto, "google.protobuf.Timestamps"),
			want:  "file declares 0 services, want 1",
			fatal: true,
		},
		{name: "wrong service name", run: check(fd, "test.Echoes", ping), want: `service = "test.Echo", want "test.Echoes"`, fatal: true},
		{name: "extra method in the service", run: check(fd, "test.Echo", ping), want: "service has methods [Ping Watch], want exactly [Ping]"},
		{name: "extra method in the contract", run: check(fd, "test.Echo", ping, watch, withPing(func(m *prototest.Method) { m.Name = "Pong" })), want: "method Pong missing"},
		{name: "streaming method", run: check(fd, "test.Echo", ping, watch), want: "Watch: method is streaming, want unary"},
		{name: "wrong input", run: check(fd, "test.Echo", withPing(func(m *prototest.Method) { m.Input = "test.Rep" }), watch), want: `Ping: input = "test.Req", want "test.Rep"`},
		{name: "wrong output", run: check(fd, "test.Echo", withPing(func(m *prototest.Method) { m.Output = "test.Req" }), watch), want: `Ping: output = "test.Rep", want "test.Req"`},
		{name: "wrong gRPC method", run: check(fd, "test.Echo", withPing(func(m *prototest.Method) { m.GRPCMethod = "/Echo/Ping" }), watch), want: `Ping: gRPC method = "/Echo/Ping", want "/test.Echo/Ping"`},
	})

	// The only failure for the right table is Watch being streaming, which
	// CheckService never accepts.
	r := &recorder{}
	prototest.CheckService(r, fd, "test.Echo", []prototest.Method{ping, watch})
	if len(r.errors) != 1 {
		t.Errorf("right table of a streaming service: failures %q, want only the streaming one", r.errors)
	}
}

func TestCheckFile(t *testing.T) {
	tsFile := timestamppb.File_google_protobuf_timestamp_proto
	ts := []prototest.Message{{Msg: &timestamppb.Timestamp{}, FullName: "google.protobuf.Timestamp", Fields: timestampFields}}
	check := func(fd protoreflect.FileDescriptor, pkg protoreflect.FullName, messages []prototest.Message) func(testing.TB) {
		return func(tb testing.TB) { prototest.CheckFile(tb, fd, pkg, messages) }
	}
	goim := []prototest.Message{{Msg: &protocol.Proto{}, FullName: "goim.protocol.Proto", Fields: protoFields}}
	goimFile := append(goim, prototest.Message{Msg: &protocol.Position{}, FullName: "goim.protocol.Position"})
	runSelfCases(t, []selfCase{
		{name: "timestamp file matches", run: check(tsFile, "google.protobuf", ts)},
		{name: "goim protocol file matches", run: check(protocol.File_api_protocol_protocol_proto, "goim.protocol", goimFile)},
		{name: "wrong package", run: check(tsFile, "goim.protocol", ts), want: `package = "google.protobuf", want "goim.protocol"`},
		{name: "message missing from the file", run: check(tsFile, "google.protobuf", append(ts, goim...)), want: "want exactly [google.protobuf.Timestamp goim.protocol.Proto]"},
		{name: "message missing from the contract", run: check(tsFile, "google.protobuf", nil), want: "messages = [google.protobuf.Timestamp], want exactly []"},
		{name: "proto2 file", run: check(descriptorpb.File_google_protobuf_descriptor_proto, "google.protobuf", nil), want: "syntax = proto2, want proto3"},
		{name: "top-level enum", run: check(echoFile(t), "test", nil), want: "file declares 1 top-level enums, want 0"},
	})
}

func TestCheckWireCase(t *testing.T) {
	ts := &timestamppb.Timestamp{Seconds: 1, Nanos: 2}
	check := func(msg proto.Message, want []byte) func(testing.TB) {
		return func(tb testing.TB) { prototest.CheckWireCase(tb, prototest.WireCase{Msg: msg, Want: want}) }
	}
	frame := &protocol.Proto{Ver: 1, Op: 9, Body: []byte("hi")}
	runSelfCases(t, []selfCase{
		{name: "timestamp matches", run: check(ts, []byte{0x08, 0x01, 0x10, 0x02})},
		{name: "goim proto matches", run: check(frame, prototest.Cat([]byte{0x08, 0x01, 0x10, 0x09, 0x22, 0x02}, []byte("hi")))},
		{name: "empty matches", run: check(&timestamppb.Timestamp{}, []byte{})},
		{name: "wrong bytes", run: check(ts, []byte{0x08, 0x01, 0x10, 0x03}), want: "marshal = 08 01 10 02"},
		{name: "other field order", run: check(ts, []byte{0x10, 0x02, 0x08, 0x01}), want: "marshal = 08 01 10 02"},
		{name: "wrong bytes decode to another message", run: check(ts, []byte{0x08, 0x01}), want: "unmarshal = "},
		{name: "message does not marshal", run: check(&descriptorpb.UninterpretedOption_NamePart{}, nil), want: "marshal: ", fatal: true},
		{name: "bytes do not decode", run: check(ts, []byte{0x08}), want: "unmarshal: ", fatal: true},
	})
}

// TestContractCheck runs a whole matching contract through Contract.Check,
// on a file built from a descriptor:
//
//	package test;
//	message Req { string text = 1; }
//	message Rep { map<string, int64> counts = 1; }
//	service Echo { rpc Ping(Req) returns (Rep); }
func TestContractCheck(t *testing.T) {
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	optional := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:    proto.String("test/ping.proto"),
		Package: proto.String("test"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Req"), Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("text"), JsonName: proto.String("text"), Number: proto.Int32(1), Label: optional, Type: str},
			}},
			{
				Name: proto.String("Rep"),
				Field: []*descriptorpb.FieldDescriptorProto{{
					Name:     proto.String("counts"),
					JsonName: proto.String("counts"),
					Number:   proto.Int32(1),
					Label:    descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(),
					Type:     descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(),
					TypeName: proto.String(".test.Rep.CountsEntry"),
				}},
				NestedType: []*descriptorpb.DescriptorProto{{
					Name: proto.String("CountsEntry"),
					Field: []*descriptorpb.FieldDescriptorProto{
						{Name: proto.String("key"), JsonName: proto.String("key"), Number: proto.Int32(1), Label: optional, Type: str},
						{Name: proto.String("value"), JsonName: proto.String("value"), Number: proto.Int32(2), Label: optional, Type: descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum()},
					},
					Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
				}},
			},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name:   proto.String("Echo"),
			Method: []*descriptorpb.MethodDescriptorProto{{Name: proto.String("Ping"), InputType: proto.String(".test.Req"), OutputType: proto.String(".test.Rep")}},
		}},
	}, nil)
	if err != nil {
		t.Fatalf("build ping.proto: %v", err)
	}
	prototest.Contract{
		File:    fd,
		Service: "test.Echo",
		Methods: []prototest.Method{{Name: "Ping", Input: "test.Req", Output: "test.Rep", GRPCMethod: "/test.Echo/Ping"}},
		Messages: []prototest.Message{
			{Msg: dynamicpb.NewMessage(fd.Messages().ByName("Req")), FullName: "test.Req", Fields: []prototest.Field{
				{Name: "text", Number: 1, Kind: protoreflect.StringKind, Shape: prototest.Single},
			}},
			{Msg: dynamicpb.NewMessage(fd.Messages().ByName("Rep")), FullName: "test.Rep", Fields: []prototest.Field{
				{Name: "counts", Number: 1, Kind: protoreflect.Int64Kind, Shape: prototest.Map, Key: protoreflect.StringKind},
			}},
		},
	}.Check(t)
}

func TestCheckWire(t *testing.T) {
	prototest.CheckWire(t, []prototest.WireCase{
		{Name: "timestamp", Msg: &timestamppb.Timestamp{Seconds: 300}, Want: []byte{0x08, 0xac, 0x02}},
	})
}

func TestCat(t *testing.T) {
	if got, want := prototest.Cat([]byte{0x0a, 0x01}, nil, []byte("a")), []byte{0x0a, 0x01, 'a'}; !bytes.Equal(got, want) {
		t.Errorf("Cat = % x, want % x", got, want)
	}
	if got := prototest.Cat(); got == nil || len(got) != 0 {
		t.Errorf("Cat() = %#v, want an empty, non-nil slice", got)
	}
}

func TestShapeString(t *testing.T) {
	for s, want := range map[prototest.Shape]string{
		prototest.Single:   "single",
		prototest.Repeated: "repeated",
		prototest.Map:      "map",
		prototest.Shape(9): "unknown",
	} {
		if got := s.String(); got != want {
			t.Errorf("Shape(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}
