package dao_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/logic/dao"
)

// BenchmarkPublish is one synchronous publish (acks = all) after another
// to an in-process kfake broker: the latency-bound path of one HTTP push.
func BenchmarkPublish(b *testing.B) {
	cluster, topic := startKafka(b, 4)
	k := newTestKafka(b, cluster.ListenAddrs(), topic, nil)
	body := make([]byte, 256)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msg := &logic.PushMsg{Type: logic.PushMsg_ROOM, Operation: 1000, Room: "live://1000", Msg: body}
		if err := k.Publish(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel is many concurrent publishers (GOMAXPROCS x 16):
// sarama batches their messages into shared produce requests. Idempotence
// allows one request in flight per broker; without it, five.
func BenchmarkPublishParallel(b *testing.B) {
	for _, bc := range []struct {
		name       string
		idempotent bool
	}{
		{name: "idempotent", idempotent: true},
		{name: "not-idempotent", idempotent: false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cluster, topic := startKafka(b, 4)
			k := newTestKafka(b, cluster.ListenAddrs(), topic, func(c *dao.KafkaConfig) { c.Idempotent = bc.idempotent })
			body := make([]byte, 256)
			ctx := context.Background()
			var room atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := "live://" + strconv.FormatInt(room.Add(1), 10)
				for pb.Next() {
					if err := k.Publish(ctx, &logic.PushMsg{Type: logic.PushMsg_ROOM, Operation: 1000, Room: r, Msg: body}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkAddSession is one AddSession (a pipeline of SET PX of conn_,
// HSET, PEXPIRE and SET PX of key_) after another against the real Redis.
func BenchmarkAddSession(b *testing.B) {
	r, _ := newTestRedis(b, nil)
	ctx := context.Background()
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.AddSession(ctx, dao.Session{Mid: int64(i%1024 + 1), Key: keys[i%1024], Server: "comet-1", ConnID: uint64(i + 1)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddSessionParallel is AddSession from many goroutines (pool of
// connections).
func BenchmarkAddSessionParallel(b *testing.B) {
	r, _ := newTestRedis(b, nil)
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1) % 4096
			if err := r.AddSession(ctx, dao.Session{Mid: i + 1, Key: "key-" + strconv.FormatInt(i, 10), Server: "comet-1", ConnID: uint64(i + 1)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
