package logic

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/logic/httpapi"
	"github.com/goim/goim/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestConnectRooms: the connect reply carries the token's rooms and
// whether they limit the connection; a room_id no room can have is the
// client's bug (InvalidArgument), in both modes; a room outside the rooms
// is refused (Unauthenticated).
func TestConnectRooms(t *testing.T) {
	signed := startLogic(t, nil)
	anyRoom := startLogic(t, func(c *Config) { c.Auth.AnyRoom = true })
	insecure := startLogic(t, func(c *Config) { c.Auth = AuthConfig{Insecure: true} })
	long := "live://" + strings.Repeat("r", 122)
	cases := []struct {
		name        string
		e           *env
		body        []byte
		code        codes.Code
		wantRooms   []string
		wantLimited bool
	}{
		{name: "claim patterns reach the comet", e: signed, body: authBody(token(t, 1, "live://*", "chat://1"), "live://7"),
			wantRooms: []string{"live://*", "chat://1"}, wantLimited: true},
		{name: "no claim: limited to no room", e: signed, body: authBody(token(t, 1), ""), wantLimited: true},
		{name: "no claim refused a room", e: signed, body: authBody(token(t, 1), "live://1"), code: codes.Unauthenticated},
		{name: "room outside the claim", e: signed, body: authBody(token(t, 1, "live://1"), "live://2"), code: codes.Unauthenticated},
		{name: "bad claim entry", e: signed, body: authBody(token(t, 1, "live://a b"), ""), code: codes.Unauthenticated},
		{name: "room id too long", e: signed, body: authBody(token(t, 1, "*"), long), code: codes.InvalidArgument},
		{name: "room id with markup", e: signed, body: authBody(token(t, 1, "*"), "live://<b>"), code: codes.InvalidArgument},
		{name: "any_room: no claim joins any room, unlimited", e: anyRoom, body: authBody(token(t, 1), "live://1")},
		{name: "any_room: a claim still limits", e: anyRoom, body: authBody(token(t, 1, "live://1"), "live://1"),
			wantRooms: []string{"live://1"}, wantLimited: true},
		{name: "any_room: room id checked", e: anyRoom, body: authBody(token(t, 1), long), code: codes.InvalidArgument},
		{name: "insecure: any room, unlimited", e: insecure, body: []byte(`{"mid":1,"room_id":"live://1"}`)},
		{name: "insecure: room id checked", e: insecure, body: []byte(`{"mid":1,"room_id":"` + long + `"}`), code: codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.e.rpc.Connect(context.Background(), &logicpb.ConnectReq{Server: "comet-a", Token: tc.body})
			if status.Code(err) != tc.code {
				t.Fatalf("Connect: %v, want code %v", err, tc.code)
			}
			if err != nil {
				return
			}
			if !slices.Equal(r.Rooms, tc.wantRooms) || r.RoomsLimited != tc.wantLimited {
				t.Fatalf("reply rooms %q limited %v, want %q %v", r.Rooms, r.RoomsLimited, tc.wantRooms, tc.wantLimited)
			}
		})
	}
	// A batch entry gets what Connect answers.
	r, err := signed.rpc.ConnectBatch(context.Background(), &logicpb.ConnectBatchReq{Reqs: []*logicpb.ConnectReq{
		{Server: "comet-a", Token: authBody(token(t, 2, "live://*"), "live://2")},
		{Server: "comet-a", Token: authBody(token(t, 2, "*"), long)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res := r.Results[0]; res.Code != 0 || !slices.Equal(res.Reply.GetRooms(), []string{"live://*"}) || !res.Reply.GetRoomsLimited() {
		t.Errorf("batch entry 0: %+v", res)
	}
	if res := r.Results[1]; codes.Code(res.Code) != codes.InvalidArgument {
		t.Errorf("batch entry 1: code %v, want InvalidArgument", codes.Code(res.Code))
	}
}

// TestReceiveOpsBounded: upstream frames are counted by op name for the
// protocol ops and under "other" for any other op, so 2,000 distinct
// unknown ops leave the series count where it was.
func TestReceiveOpsBounded(t *testing.T) {
	e := startLogic(t, nil)
	recv := func(op int32) {
		t.Helper()
		if _, err := e.rpc.Receive(context.Background(), &logicpb.ReceiveReq{Mid: 1, Proto: &protocol.Proto{Op: op, Body: []byte("hi")}}); err != nil {
			t.Fatal(err)
		}
	}
	before := testutil.CollectAndCount(e.srv.svc.metrics.received)
	if before != int(protocolOps)+1 {
		t.Fatalf("%d series before any frame, want %d (the protocol ops and other)", before, protocolOps+1)
	}
	recv(protocol.OpSendMsg)
	for i := range int32(2000) {
		recv(1000 + i)
	}
	recv(-1)
	recv(protocolOps)
	if n := testutil.CollectAndCount(e.srv.svc.metrics.received); n != before {
		t.Fatalf("%d series after 2,000 distinct ops, want %d", n, before)
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.received.WithLabelValues("other")); got != 2002 {
		t.Errorf(`received{op="other"} = %v, want 2002`, got)
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.received.WithLabelValues("send_msg")); got != 1 {
		t.Errorf(`received{op="send_msg"} = %v, want 1`, got)
	}
}

// TestRenewOnlineDropsBadRooms: invalid room ids and counts <= 0 are
// dropped from a report, counted, and appear in neither the answer nor
// the stored report.
func TestRenewOnlineDropsBadRooms(t *testing.T) {
	e := startLogic(t, nil)
	rooms := map[string]int32{
		"live://1":                            3,
		"live://2":                            0,
		"live://3":                            -4,
		"live://" + strings.Repeat("x", 4096): 1,
		"live://a b":                          1,
		"":                                    2,
		"chat://ok":                           1,
	}
	r, err := e.rpc.RenewOnline(context.Background(), &logicpb.OnlineReq{Server: "comet-a", RoomCount: rooms, ConnCount: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int32{"live://1": 3, "chat://ok": 1}
	if !maps.Equal(r.AllRoomCount, want) {
		t.Errorf("answer %v, want %v", r.AllRoomCount, want)
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.roomsDropped); got != 5 {
		t.Errorf("online_rooms_dropped_total = %v, want 5", got)
	}
	// The report kept, and the stored one every logic reads at refresh,
	// hold the kept rooms only (a refresh may briefly replace the kept one
	// with what Redis held before it).
	testkit.WaitFor(t, 5*time.Second, func() error {
		if rep, ok := e.srv.svc.online.get("comet-a"); !ok || !maps.Equal(rep.Rooms, want) {
			return fmt.Errorf("kept report %+v, want rooms %v", rep, want)
		}
		if got := e.srv.svc.OnlineRoom("live", []string{"1", "2"}); !maps.Equal(got, map[string]int32{"1": 3, "2": 0}) {
			return fmt.Errorf("online room counts %v", got)
		}
		return nil
	})
}

// TestBoundReport: a report keeps at most maxReportRooms rooms.
func TestBoundReport(t *testing.T) {
	rooms := make(map[string]int32, maxReportRooms+10)
	for i := range maxReportRooms + 10 {
		rooms["live://"+strconv.Itoa(i)] = 1
	}
	rooms["live://bad room"] = 1
	if dropped := boundReport(rooms); dropped != 11 || len(rooms) != maxReportRooms {
		t.Fatalf("dropped %d, kept %d; want 11 and %d", dropped, len(rooms), maxReportRooms)
	}
	if _, ok := rooms["live://bad room"]; ok {
		t.Fatal("invalid room kept")
	}
	small := map[string]int32{"live://1": 1}
	if dropped := boundReport(small); dropped != 0 || len(small) != 1 {
		t.Fatalf("a valid report changed: %d dropped, %v", dropped, small)
	}
}

// TestPushAPICredential: logic refuses to start without a push API
// credential unless allow_anonymous; with one, the push API requires it.
func TestPushAPICredential(t *testing.T) {
	_, prefix := testkit.Redis(t)
	kc, topic := testkit.Kafka(t, 1)
	cfg := testConfig(t, prefix, kc.ListenAddrs(), topic)
	cfg.HTTP.Tokens = nil
	t.Setenv(httpapi.EnvTokens, "")
	_, err := New(cfg, Deps{Registry: prometheus.NewRegistry()})
	if !errors.Is(err, httpapi.ErrNoCredential) || !strings.Contains(err.Error(), "allow_anonymous") {
		t.Fatalf("New without a credential: %v, want httpapi.ErrNoCredential", err)
	}
	if _, err := CheckFiles(cfg); !errors.Is(err, httpapi.ErrNoCredential) {
		t.Fatalf("CheckFiles without a credential: %v", err)
	}
	cfg.HTTP.AllowAnonymous = true
	if w, err := CheckFiles(cfg); err != nil || len(w) != 1 || !strings.Contains(w[0], "open") {
		t.Fatalf("CheckFiles anonymous: %q, %v; want one warning", w, err)
	}
	t.Setenv(httpapi.EnvTokens, "from-the-environment-0123456789")
	cfg.HTTP.AllowAnonymous = false
	if w, err := CheckFiles(cfg); err != nil || len(w) != 0 {
		t.Fatalf("CheckFiles with a token from the environment: %q, %v", w, err)
	}

	e := startLogic(t, nil)
	for _, tc := range []struct {
		name, method, path, auth string
		status                   int
	}{
		{name: "push without credential", method: "POST", path: "/goim/push/all?operation=1", auth: "", status: 401},
		{name: "push wrong credential", method: "POST", path: "/goim/push/all?operation=1", auth: "Bearer wrong-token-0123456789", status: 401},
		{name: "online without credential", method: "GET", path: "/goim/online/total", auth: "", status: 401},
		{name: "instances without credential", method: "GET", path: "/goim/nodes/instances", auth: "", status: 401},
		{name: "weighted is public", method: "GET", path: "/goim/nodes/weighted", auth: "", status: 200},
		{name: "push with credential", method: "POST", path: "/goim/push/all?operation=1", auth: "Bearer " + apiToken, status: 200},
	} {
		if code, body := e.do(tc.method, tc.path, []byte("x"), "Authorization", tc.auth); code != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.status)
		}
	}
}

// TestBalancerBounded: anonymous /goim/nodes/weighted calls count at most
// max(minAssignCap, reported connections) clients against a comet between
// its reports, however many calls come.
func TestBalancerBounded(t *testing.T) {
	b := newBalancer()
	for range 50 * minAssignCap {
		b.order([]candidate{{host: "a", weight: 10}})
		b.order([]candidate{{host: "b", weight: 10, conns: 3000}})
	}
	if got := b.assigned["a"]; got != minAssignCap {
		t.Errorf("comet a (0 connections): %d counted, want the cap %d", got, minAssignCap)
	}
	if got := b.assigned["b"]; got != 3000 {
		t.Errorf("comet b (3000 connections): %d counted, want the cap 3000", got)
	}
	if len(b.assigned) != 2 {
		t.Errorf("%d entries, want one per comet", len(b.assigned))
	}
	// The cap follows the comet's reported connections.
	c := []candidate{{host: "b", weight: 10, conns: 3000}, {host: "a", weight: 10, conns: 1500}}
	b.order(c)
	if c[0].host != "a" || b.assigned["a"] != minAssignCap+1 {
		t.Errorf("order %v, a counted %d", c, b.assigned["a"])
	}
	b.reported("a")
	if _, ok := b.assigned["a"]; ok {
		t.Error("a report did not forget the comet's count")
	}
}
