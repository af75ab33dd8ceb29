package comet

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
)

// BenchmarkRoomBroadcast pushes one 20-message batch to a room of real TCP
// clients (members, default 1,000) and waits until every client has read it.
// allocs/op divided by members is the per-recipient allocation count.
func BenchmarkRoomBroadcast(b *testing.B) {
	for _, members := range []int{1000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			e := startComet(b, unlimited) // members clients from one IP
			var got atomic.Int64
			var batch protocol.Batch
			for i := range 20 {
				_ = batch.Append(1000, []byte(fmt.Sprintf(`{"test":%d}`, i)))
			}
			frameLen := int64(batch.Len())
			for i := range members {
				c := dial(b, e, "tcp")
				c.auth(fmt.Sprintf(`{"key":"m%d","room_id":"live://bench","accepts":[]}`, i))
				go func(conn net.Conn) {
					buf := make([]byte, 64<<10)
					for {
						n, err := conn.Read(buf)
						got.Add(int64(n))
						if err != nil {
							return
						}
					}
				}(c.conn)
			}
			f := newFrame(&protocol.Proto{Ver: 1, Op: protocol.OpRaw, Body: batch.Frames()})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				want := got.Load() + frameLen*int64(members)
				queued, _ := e.srv.rooms.broadcast("live://bench", f, toAll, nil, e.srv.metrics)
				if queued != members {
					b.Fatalf("queued %d of %d", queued, members)
				}
				deadline := time.Now().Add(10 * time.Second)
				for got.Load() < want {
					if time.Now().After(deadline) {
						b.Fatalf("round %d: clients read %d bytes, want %d", i, got.Load(), want)
					}
					time.Sleep(50 * time.Microsecond)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(members*20)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkPush pushes one small frame to one plain TCP channel whose
// client reads everything, so the pusher writes it inline (push,
// writeInline, writeNow): allocs/op is what one such delivery allocates.
func BenchmarkPush(b *testing.B) {
	e := startComet(b, unlimited)
	c := dial(b, e, "tcp")
	c.auth(`{"key":"push-bench","accepts":[]}`)
	c.discard()
	ch := e.srv.bucket("push-bench").get("push-bench")
	if ch == nil {
		b.Fatal("channel not published")
	}
	f := newFrame(&protocol.Proto{Ver: 1, Op: 1000, Body: []byte(`{"test":1}`)})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if ch.push(f.bytes(ch.tr)) != pushQueued {
			time.Sleep(time.Millisecond) // a full queue: let the writer catch up
		}
	}
}

// BenchmarkPushKeys is one key push through PushKeys (the PushMsg RPC's
// path without gRPC) to a plain TCP channel whose client reads
// everything: the frame's encoding, the bucket lookup and the inline
// write.
func BenchmarkPushKeys(b *testing.B) {
	e := startComet(b, unlimited)
	c := dial(b, e, "tcp")
	c.auth(`{"key":"pushkeys-bench","accepts":[1000]}`)
	c.discard()
	keys := []string{"pushkeys-bench"}
	p := &protocol.Proto{Ver: 1, Op: 1000, Body: []byte(`{"test":1}`)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := e.srv.PushKeys(keys, 1000, p); res.Delivered != 1 {
			time.Sleep(time.Millisecond) // a full queue: let the writer catch up
		}
	}
}

// discard reads and drops everything the server sends c until its
// connection closes, so that the server always finds it idle.
func (c *client) discard() {
	go func(conn net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}(c.conn)
}
