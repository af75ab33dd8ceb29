package dao_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/alicebob/miniredis/v2"

	"github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/testkit"
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

// BenchmarkRedisModes is what logic's Redis work per connection costs, one
// operation after another (latency, not throughput), on one Redis and on a
// Redis Cluster of three masters, both redis-server processes of the
// benchmark's own on loopback, and on miniredis (the all-in-one's embedded
// Redis):
//
//	connect     AddSession (one handshake)
//	push_key    ServersByKeys of one key (one unicast push to a key)
//	push_mid    KeysByMids of one mid (one unicast push to a member)
//	renew       RenewSession (one heartbeat renewal)
//	disconnect  DelSession (one disconnect)
//	churn_256   AddSessions then DelSessions of 256 sessions (the Redis side
//	            of a ConnectBatch and a DisconnectBatch of 256)
func BenchmarkRedisModes(b *testing.B) {
	single := testkit.StartRedisServer(b, freePort(b))
	cluster := testkit.StartRedisCluster(b, 3, nil)
	mini := miniredis.RunT(b)
	for _, mode := range []struct {
		name string
		edit func(*dao.RedisConfig)
	}{
		{name: "single", edit: func(c *dao.RedisConfig) { c.Addr = single.Addr() }},
		{name: "cluster", edit: func(c *dao.RedisConfig) { c.Cluster, c.ClusterAddrs = true, cluster.Addrs() }},
		{name: "miniredis", edit: func(c *dao.RedisConfig) { c.Addr = mini.Addr() }},
	} {
		cfg := dao.DefaultRedisConfig()
		cfg.Prefix = "bench:" + randomHex(4) + ":"
		mode.edit(&cfg)
		r, err := dao.NewRedis(cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { r.Close() })
		benchRedisOps(b, mode.name, r)
	}
}

func benchRedisOps(b *testing.B, mode string, r *dao.Redis) {
	ctx := context.Background()
	const live = 1024 // sessions the reads and renewals use
	session := func(i int) dao.Session {
		return dao.Session{Mid: int64(i + 1), Key: "key-" + strconv.Itoa(i), Server: "comet-" + strconv.Itoa(i%3), ConnID: uint64(i + 1)}
	}
	add := func(b *testing.B, from, n int) {
		for first := from; first < from+n; first += 1024 {
			batch := make([]dao.Session, 0, 1024)
			for i := first; i < min(first+1024, from+n); i++ {
				batch = append(batch, session(i))
			}
			for _, err := range r.AddSessions(ctx, batch) {
				if err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	add(b, 0, live)
	next := live // sessions above live are fresh for connect and disconnect
	b.Run(mode+"/connect", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := r.AddSession(ctx, session(next+i)); err != nil {
				b.Fatal(err)
			}
		}
		next += b.N
	})
	b.Run(mode+"/push_key", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if got, err := r.ServersByKeys(ctx, []string{session(i % live).Key}); err != nil || len(got) != 1 {
				b.Fatal(got, err)
			}
		}
	})
	b.Run(mode+"/push_mid", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if got, err := r.KeysByMids(ctx, []int64{session(i % live).Mid}); err != nil || len(got) != 1 {
				b.Fatal(got, err)
			}
		}
	})
	b.Run(mode+"/renew", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if res, err := r.RenewSession(ctx, session(i%live)); err != nil || res != dao.Renewed {
				b.Fatal(res, err)
			}
		}
	})
	b.Run(mode+"/disconnect", func(b *testing.B) {
		add(b, next, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if owned, err := r.DelSession(ctx, session(next+i)); err != nil || !owned {
				b.Fatal(owned, err)
			}
		}
		b.StopTimer()
		next += b.N
	})
	b.Run(mode+"/churn_256", func(b *testing.B) {
		batch := make([]dao.Session, 256)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			for j := range batch {
				batch[j] = session(next + j)
			}
			next += len(batch)
			for _, err := range r.AddSessions(ctx, batch) {
				if err != nil {
					b.Fatal(err)
				}
			}
			if _, _, err := r.DelSessions(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
	})
}
