// Package prototest is a test-only helper that pins protobuf contracts: it
// walks generated descriptors with protoreflect and compares them, name by
// name and number by number, against tables kept in the contract tests, and
// pins exact wire encodings. It imports package testing and is meant to be
// imported only from _test.go files.
package prototest

import (
	"bytes"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Shape is a field's cardinality as it appears in the .proto.
type Shape int

const (
	Single   Shape = iota // plain proto3 field, not in a oneof
	Repeated              // repeated, not a map
	Map                   // map<key, value>
)

func (s Shape) String() string {
	switch s {
	case Single:
		return "single"
	case Repeated:
		return "repeated"
	case Map:
		return "map"
	}
	return "unknown"
}

// Field is one field of a contract.
type Field struct {
	Name   protoreflect.Name
	Number protoreflect.FieldNumber
	Kind   protoreflect.Kind // for a map, the value's kind
	Shape  Shape
	Key    protoreflect.Kind     // map key kind; maps only
	Ref    protoreflect.FullName // message or enum full name for such kinds
}

// Message is one message of a contract with its full field set.
type Message struct {
	Msg      proto.Message // any value of the generated type
	FullName protoreflect.FullName
	Fields   []Field
	// Enums names the enums nested in the message; their values are for the
	// caller to pin.
	Enums []protoreflect.Name
}

// Method is one unary RPC of a contract.
type Method struct {
	Name       protoreflect.Name
	Input      protoreflect.FullName
	Output     protoreflect.FullName
	GRPCMethod string // the generated FullMethodName constant
}

// WireCase is one pinned encoding: Msg marshals deterministically to exactly
// Want, and Want unmarshals back to a message equal to Msg.
type WireCase struct {
	Name string
	Msg  proto.Message
	Want []byte
}

// Contract is what one generated .proto file promises: its only service
// with its methods, its package (the service's parent name), and its
// top-level messages with their full field sets. Build it inside the test function: the generated File_...
// descriptor variables are set by init functions, after package-level
// variables are initialized.
type Contract struct {
	File     protoreflect.FileDescriptor
	Service  protoreflect.FullName // e.g. "goim.comet.Comet" in package goim.comet
	Methods  []Method
	Messages []Message
}

// Check runs CheckFile, CheckService and, for each message, CheckMessage in
// subtests named "File", "Service" and "Message/<name>". Failures are
// reported at the caller's line.
func (c Contract) Check(t *testing.T) {
	t.Helper()
	t.Run("File", func(t *testing.T) {
		t.Helper()
		CheckFile(t, c.File, c.Service.Parent(), c.Messages)
	})
	t.Run("Service", func(t *testing.T) {
		t.Helper()
		CheckService(t, c.File, c.Service, c.Methods)
	})
	for _, m := range c.Messages {
		t.Run("Message/"+string(m.FullName.Name()), func(t *testing.T) {
			t.Helper()
			CheckMessage(t, m)
		})
	}
}

// CheckFile asserts that fd is a proto3 file of package pkg that declares no
// top-level enums and exactly the top-level messages listed.
func CheckFile(t testing.TB, fd protoreflect.FileDescriptor, pkg protoreflect.FullName, messages []Message) {
	t.Helper()
	if got := fd.Package(); got != pkg {
		t.Errorf("package = %q, want %q", got, pkg)
	}
	if got, want := fd.Syntax(), protoreflect.Proto3; got != want {
		t.Errorf("syntax = %v, want %v", got, want)
	}
	if n := fd.Enums().Len(); n != 0 {
		t.Errorf("file declares %d top-level enums, want 0", n)
	}
	got := names(fd.Messages().Len(), func(i int) string { return string(fd.Messages().Get(i).FullName()) })
	want := names(len(messages), func(i int) string { return string(messages[i].FullName) })
	if !sameSet(got, want) {
		t.Errorf("messages = %v, want exactly %v", got, want)
	}
}

// CheckService asserts that fd declares exactly one service, named fullName,
// with exactly the unary methods listed, and that each method's generated
// FullMethodName constant is the gRPC path of that method.
func CheckService(t testing.TB, fd protoreflect.FileDescriptor, fullName protoreflect.FullName, methods []Method) {
	t.Helper()
	services := fd.Services()
	if services.Len() != 1 {
		t.Fatalf("file declares %d services, want 1", services.Len())
		return
	}
	sd := services.Get(0)
	if sd.FullName() != fullName {
		t.Fatalf("service = %q, want %q", sd.FullName(), fullName)
		return
	}
	got := names(sd.Methods().Len(), func(i int) string { return string(sd.Methods().Get(i).Name()) })
	want := names(len(methods), func(i int) string { return string(methods[i].Name) })
	if !sameSet(got, want) {
		t.Errorf("service has methods %v, want exactly %v", got, want)
	}
	for _, m := range methods {
		md := sd.Methods().ByName(m.Name)
		if md == nil {
			t.Errorf("method %s missing", m.Name)
			continue
		}
		if got := md.Input().FullName(); got != m.Input {
			t.Errorf("%s: input = %q, want %q", m.Name, got, m.Input)
		}
		if got := md.Output().FullName(); got != m.Output {
			t.Errorf("%s: output = %q, want %q", m.Name, got, m.Output)
		}
		if md.IsStreamingClient() || md.IsStreamingServer() {
			t.Errorf("%s: method is streaming, want unary", m.Name)
		}
		if want := "/" + string(sd.FullName()) + "/" + string(m.Name); m.GRPCMethod != want {
			t.Errorf("%s: gRPC method = %q, want %q", m.Name, m.GRPCMethod, want)
		}
	}
}

// CheckMessage asserts that the descriptor of m.Msg is named m.FullName, has
// exactly the fields in m.Fields and the nested enums in m.Enums, no oneofs,
// and no nested messages other than map entries.
func CheckMessage(t testing.TB, m Message) {
	t.Helper()
	md := m.Msg.ProtoReflect().Descriptor()
	if md.FullName() != m.FullName {
		t.Fatalf("full name = %q, want %q", md.FullName(), m.FullName)
		return
	}
	for i := 0; i < md.Messages().Len(); i++ {
		if nested := md.Messages().Get(i); !nested.IsMapEntry() {
			t.Errorf("unexpected nested message %s", nested.FullName())
		}
	}
	gotEnums := names(md.Enums().Len(), func(i int) string { return string(md.Enums().Get(i).Name()) })
	wantEnums := names(len(m.Enums), func(i int) string { return string(m.Enums[i]) })
	if !sameSet(gotEnums, wantEnums) {
		t.Errorf("nested enums = %v, want exactly %v", gotEnums, wantEnums)
	}
	if md.Oneofs().Len() != 0 {
		t.Errorf("message has %d oneofs, want 0", md.Oneofs().Len())
	}
	fields := md.Fields()
	got := names(fields.Len(), func(i int) string { return string(fields.Get(i).Name()) })
	want := names(len(m.Fields), func(i int) string { return string(m.Fields[i].Name) })
	if !sameSet(got, want) {
		t.Errorf("fields = %v, want exactly %v", got, want)
	}
	for _, s := range m.Fields {
		f := fields.ByName(s.Name)
		if f == nil {
			t.Errorf("field %s missing", s.Name)
			continue
		}
		checkField(t, f, s)
	}
}

func checkField(t testing.TB, f protoreflect.FieldDescriptor, s Field) {
	t.Helper()
	if f.Number() != s.Number {
		t.Errorf("%s: number = %d, want %d", s.Name, f.Number(), s.Number)
	}
	if f.ContainingOneof() != nil {
		t.Errorf("%s: in oneof %s (proto3 optional?), want a plain field", s.Name, f.ContainingOneof().Name())
	}
	var shape Shape
	switch {
	case f.IsMap():
		shape = Map
	case f.IsList():
		shape = Repeated
	default:
		shape = Single
	}
	if shape != s.Shape {
		t.Errorf("%s: cardinality = %v, want %v", s.Name, shape, s.Shape)
	}
	vf := f
	if f.IsMap() {
		if k := f.MapKey().Kind(); k != s.Key {
			t.Errorf("%s: map key kind = %v, want %v", s.Name, k, s.Key)
		}
		vf = f.MapValue()
	}
	if vf.Kind() != s.Kind {
		t.Errorf("%s: kind = %v, want %v", s.Name, vf.Kind(), s.Kind)
	}
	var ref protoreflect.FullName
	switch vf.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		ref = vf.Message().FullName()
	case protoreflect.EnumKind:
		ref = vf.Enum().FullName()
	}
	if ref != s.Ref {
		t.Errorf("%s: type = %q, want %q", s.Name, ref, s.Ref)
	}
}

// CheckWire runs CheckWireCase on each case in a subtest named after it.
// Failures are reported at the caller's line.
func CheckWire(t *testing.T, cases []WireCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Helper()
			CheckWireCase(t, c)
		})
	}
}

// CheckWireCase asserts that c.Msg marshals deterministically to exactly
// c.Want and that c.Want unmarshals to a message equal to c.Msg.
func CheckWireCase(t testing.TB, c WireCase) {
	t.Helper()
	got, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.Msg)
	if err != nil {
		t.Fatalf("marshal: %v", err)
		return
	}
	if !bytes.Equal(got, c.Want) {
		t.Errorf("marshal = % x\nwant      % x", got, c.Want)
	}
	back := c.Msg.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(c.Want, back); err != nil {
		t.Fatalf("unmarshal: %v", err)
		return
	}
	if !proto.Equal(back, c.Msg) {
		t.Errorf("unmarshal = %v, want %v", back, c.Msg)
	}
}

// Cat joins byte pieces so expected wire bytes read field by field.
func Cat(pieces ...[]byte) []byte {
	return bytes.Join(pieces, nil)
}

// names collects n strings, the i-th from at(i).
func names(n int, at func(int) string) []string {
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, at(i))
	}
	return out
}

// sameSet reports whether a and b hold the same strings, ignoring order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
