package discovery

import (
	"reflect"
	"testing"
)

func TestCometMetaRoundTrip(t *testing.T) {
	m := CometMeta{Weight: 7, Offline: true, Addrs: []string{"a.example:3101", "10.0.0.1"}, ConnCount: 42, IPCount: 9}
	got := ParseCometMeta(m.Metadata())
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip: got %+v, want %+v", got, m)
	}
	md := m.Metadata()
	want := map[string]string{"weight": "7", "offline": "true", "addrs": "a.example:3101,10.0.0.1", "conn_count": "42", "ip_count": "9"}
	if !reflect.DeepEqual(md, want) {
		t.Fatalf("metadata keys (goim v2's): got %v, want %v", md, want)
	}
}

func TestParseCometMetaDefaults(t *testing.T) {
	for _, md := range []map[string]string{
		nil,
		{"weight": "x", "conn_count": "-1", "ip_count": "", "offline": "yes", "addrs": " , "},
		{"weight": "0"},
	} {
		got := ParseCometMeta(md)
		want := CometMeta{Weight: DefaultCometWeight}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseCometMeta(%v) = %+v, want %+v", md, got, want)
		}
	}
	if got := ParseCometMeta(map[string]string{"addrs": " a , ,b "}).Addrs; !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("addrs: got %q", got)
	}
}

func TestInstanceGRPC(t *testing.T) {
	ins := Instance{Addrs: []string{HTTPAddr("10.0.0.1:3111"), GRPCAddr("10.0.0.1:3109"), GRPCAddr("10.0.0.2:3109")}}
	if hp, ok := ins.GRPC(); !ok || hp != "10.0.0.1:3109" {
		t.Fatalf("GRPC() = %q, %v", hp, ok)
	}
	if hp, ok := (Instance{Addrs: []string{"http://x:1"}}).GRPC(); ok {
		t.Fatalf("GRPC() without a grpc address = %q, true", hp)
	}
}
