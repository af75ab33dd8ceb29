package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/testkit"
	"github.com/golang-jwt/jwt/v5"
)

// fakeComet is a TCP goim server on loopback: it answers auth and
// heartbeats like comet and sends each connection the pushes script
// returns for its auth body (a nil script entry closes the connection).
type fakeComet struct {
	ln     net.Listener
	wg     sync.WaitGroup
	script func(a protocol.AuthBody) [][]byte
	// raw, when set, replaces script: whole frames, written as they are.
	raw func(a protocol.AuthBody) [][]byte
	// got, when set, gets every frame a client sends after its auth but
	// heartbeats (the body is the callee's).
	got func(op int32, body []byte)
}

func startFakeComet(t *testing.T, script func(a protocol.AuthBody) [][]byte) *fakeComet {
	t.Helper()
	return startFake(t, &fakeComet{script: script})
}

// startFake starts f (its script, raw and got set).
func startFake(t *testing.T, f *fakeComet) *fakeComet {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	f.wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Go(func() { f.serve(nc) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeComet) serve(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	var p protocol.Proto
	if err := p.ReadTCP(br, 4096); err != nil || p.Op != protocol.OpAuth {
		return
	}
	a, err := protocol.ParseAuthBody(p.Body)
	if err != nil {
		return
	}
	var wmu sync.Mutex
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := nc.Write(b)
		return err
	}
	if write(protocol.AppendFrame(nil, p.Ver, protocol.OpAuthReply, p.Seq, nil)) != nil {
		return
	}
	done := make(chan struct{})
	f.wg.Go(func() {
		defer close(done)
		for {
			var q protocol.Proto
			if q.ReadTCP(br, 4096) != nil {
				return
			}
			if q.Op == protocol.OpHeartbeat {
				_ = write(protocol.AppendFrame(nil, q.Ver, protocol.OpHeartbeatReply, q.Seq, []byte{0, 0, 0, 1}))
			} else if f.got != nil {
				f.got(q.Op, slices.Clone(q.Body))
			}
		}
	})
	if f.raw != nil {
		for _, frame := range f.raw(a) {
			if write(frame) != nil {
				return
			}
		}
		<-done
		return
	}
	for _, body := range f.script(a) {
		if body == nil {
			return // drop the client
		}
		if write(protocol.AppendFrame(nil, 1, 1000, 0, body)) != nil {
			return
		}
	}
	<-done
}

func TestConnsRecord(t *testing.T) {
	const run = "ct1"
	now := time.Now().UnixNano()
	body := func(seq uint64) []byte { return AppendBody(nil, run, "room:live://1", seq, now, 0) }
	comet := startFakeComet(t, func(a protocol.AuthBody) [][]byte {
		switch a.Mid {
		case 1: // everything in order, a foreign push in between
			return [][]byte{body(1), body(2), []byte(`{"not":"ours"}`), AppendBody(nil, "other", "room:live://1", 3, now, 0), body(3)}
		case 2: // 3 before 2, and 1 twice
			return [][]byte{body(1), body(3), body(2), body(1)}
		default: // two pushes, then dropped
			return [][]byte{body(1), body(2), nil}
		}
	})
	before := runtime.NumGoroutine()
	c, err := NewConns(ConnsConfig{Run: run, N: 3, Transport: TransportTCP, Addrs: []string{comet.ln.Addr().String()},
		Src: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, DialConcurrency: 2, HandshakeTimeout: 5 * time.Second,
		Heartbeat: 100 * time.Millisecond, Rooms: []string{"live://1"}, MidStart: 1, KeyPrefix: "k", Accepts: []int32{1000}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Open(context.Background())
	testkit.WaitFor(t, 5*time.Second, func() error {
		if d, dr, hb := c.delivered.Load(), c.dropped.Load(), c.hbReplies.Load(); d != 3+3+2 || dr != 1 || hb < 3 {
			return fmt.Errorf("delivered %d, dropped %d, heartbeat replies %d", d, dr, hb)
		}
		return nil
	})
	c.Close()
	r := c.Record()
	if r.Failed != 0 || len(r.Conns) != 3 || r.Foreign != 2 || r.Frames != 5+4+2 || r.End == 0 || r.Errors["read/eof"] != 1 {
		t.Fatalf("record %+v", r)
	}
	slices.SortFunc(r.Conns, func(a, b ConnRecord) int { return a.Index - b.Index })
	want := []struct {
		ranges    [][2]uint64
		dup, late uint32
		dropped   bool
	}{
		{ranges: [][2]uint64{{1, 3}}},
		{ranges: [][2]uint64{{1, 3}}, dup: 1, late: 1},
		{ranges: [][2]uint64{{1, 2}}, dropped: true},
	}
	for i, w := range want {
		cr := r.Conns[i]
		if cr.Mid != int64(i+1) || cr.Key != fmt.Sprint("k", i) || cr.Room != "live://1" || cr.Up == 0 || (cr.Down != 0) != w.dropped {
			t.Fatalf("conn %d: %+v", i, cr)
		}
		if len(cr.Streams) != 1 || !slices.Equal(cr.Streams[0].Ranges, w.ranges) || cr.Streams[0].Dup != w.dup || cr.Streams[0].Late != w.late {
			t.Fatalf("conn %d streams %+v", i, cr.Streams)
		}
	}
	if want := []LateArrival{{Stream: "room:live://1", Seq: 2, After: 3, Count: 1}}; !slices.Equal(r.LateArrivals, want) || r.Reads < 3 {
		t.Fatalf("late arrivals %+v, want %+v; reads %d", r.LateArrivals, want, r.Reads)
	}
	if r.Latency.N != 8 || r.Handshake.N != 3 {
		t.Fatalf("histograms: latency %d handshake %d", r.Latency.N, r.Handshake.N)
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
}

func TestConnsFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: refused
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close() // accepts (backlog) but never answers auth: timeout
	c, err := NewConns(ConnsConfig{Run: "r", N: 4, Transport: TransportWS, Addrs: []string{addr, silent.Addr().String()},
		DialConcurrency: 4, HandshakeTimeout: 300 * time.Millisecond, Heartbeat: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Open(context.Background())
	c.Close()
	r := c.Record()
	if r.Failed != 4 || len(r.Conns) != 0 || r.Errors["dial/refused"] != 2 || r.Errors["upgrade/timeout"] != 2 {
		t.Fatalf("failed %d, errors %v", r.Failed, r.Errors)
	}
	s := &Summary{Conns: summarizeConns([]*ConnsRecord{r})}
	s.judge()
	if s.OK || len(s.Failures) != 2 {
		t.Fatalf("failures %q", s.Failures)
	}
}

// TestAuthBodyToken: with an HMAC key the auth body carries an HS256
// token for the connection's mid and room (what logic with
// auth.hmac_key_file verifies) and no claimed mid or key; without one it
// is goim v2's JSON.
func TestAuthBodyToken(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	cn := &conn{mid: 42, key: "k42", room: "live://1"}
	cfg := &ConnsConfig{HMACKey: key, Platform: "web", Accepts: []int32{1000}}
	b, err := cn.authBody(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := protocol.ParseAuthBody(b)
	if err != nil {
		t.Fatal(err)
	}
	if a.Mid != 0 || a.Key != "" || a.RoomID != "live://1" || a.Token == "" || !slices.Equal(a.Accepts, []int32{1000}) {
		t.Fatalf("body %s", b)
	}
	var claims tokenClaims
	if _, err := jwt.ParseWithClaims(a.Token, &claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()); err != nil || claims.Subject != "42" ||
		!slices.Equal(claims.Rooms, []string{"live://1"}) {
		t.Fatalf("token %q: subject %q, rooms %q, %v", a.Token, claims.Subject, claims.Rooms, err)
	}

	cfg.HMACKey = nil
	if b, err = cn.authBody(cfg); err != nil {
		t.Fatal(err)
	}
	if a, err = protocol.ParseAuthBody(b); err != nil || a.Mid != 42 || a.Key != "k42" || a.Token != "" {
		t.Fatalf("plain body %s: %v", b, err)
	}

	for _, c := range []ConnsConfig{{HMACKey: key[:31]}, {HMACKey: key, KeyPrefix: "k"}} {
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "-hmac-key-file") {
			t.Errorf("HMAC key of %d bytes, key prefix %q: %v", len(c.HMACKey), c.KeyPrefix, err)
		}
	}
}
