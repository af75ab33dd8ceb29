package dao_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"

	"github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/dao"
)

var msgIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// wantPartition is the partition sarama's hash partitioner (goim v2's)
// gives key among n, computed independently of the DAO's settings.
func wantPartition(t *testing.T, key string, n int32) int32 {
	t.Helper()
	p, err := sarama.NewHashPartitioner("").Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func decodePush(t *testing.T, rec *kgo.Record) *logic.PushMsg {
	t.Helper()
	var m logic.PushMsg
	if err := proto.Unmarshal(rec.Value, &m); err != nil {
		t.Fatalf("record at %s[%d]@%d does not decode: %v", rec.Topic, rec.Partition, rec.Offset, err)
	}
	return &m
}

func TestKafkaConfigValidate(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(*dao.KafkaConfig)
		wantPaths []string // key paths the error must name; none = valid
	}{
		{name: "defaults are valid", mutate: func(*dao.KafkaConfig) {}},
		{name: "old version without idempotence", mutate: func(c *dao.KafkaConfig) { c.Version = "0.10.2.0"; c.Idempotent = false }},
		{name: "no brokers", mutate: func(c *dao.KafkaConfig) { c.Brokers = nil }, wantPaths: []string{"kafka.brokers"}},
		{name: "broker without port", mutate: func(c *dao.KafkaConfig) { c.Brokers = []string{"a:9092", "b"} }, wantPaths: []string{"kafka.brokers[1]"}},
		{name: "empty topic", mutate: func(c *dao.KafkaConfig) { c.Topic = "" }, wantPaths: []string{"kafka.topic"}},
		{name: "topic with a slash", mutate: func(c *dao.KafkaConfig) { c.Topic = "goim/push" }, wantPaths: []string{"kafka.topic"}},
		{name: "zero timeout", mutate: func(c *dao.KafkaConfig) { c.Timeout = 0 }, wantPaths: []string{"kafka.timeout"}},
		{name: "zero max message bytes", mutate: func(c *dao.KafkaConfig) { c.MaxMessageBytes = 0 }, wantPaths: []string{"kafka.max_message_bytes"}},
		{name: "unparsable version", mutate: func(c *dao.KafkaConfig) { c.Version = "two" }, wantPaths: []string{"kafka.version"}},
		{name: "idempotence on an old version", mutate: func(c *dao.KafkaConfig) { c.Version = "0.10.2.0" }, wantPaths: []string{"kafka.version"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := dao.DefaultKafkaConfig()
			tt.mutate(&cfg)
			var p conf.Problems
			cfg.Validate(p.Sub("kafka"))
			err := p.Err()
			if len(tt.wantPaths) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				k, err := dao.NewKafka(cfg, nil)
				if err != nil {
					t.Fatalf("NewKafka: %v", err)
				}
				k.Close()
				return
			}
			wantInvalid(t, err, tt.wantPaths)
			if _, err := dao.NewKafka(cfg, nil); !errors.Is(err, conf.ErrInvalid) {
				t.Errorf("NewKafka = %v, want conf.ErrInvalid", err)
			}
		})
	}
}

func TestPublish(t *testing.T) {
	const partitions = 4
	tests := []struct {
		name    string
		msg     *logic.PushMsg
		wantKey string
	}{
		{
			name:    "PUSH is keyed by server",
			msg:     &logic.PushMsg{Type: logic.PushMsg_PUSH, Operation: 1000, Server: "comet-1", Keys: []string{"k1", "k2"}, Msg: []byte("hello")},
			wantKey: "comet-1",
		},
		{
			name:    "ROOM is keyed by room",
			msg:     &logic.PushMsg{Type: logic.PushMsg_ROOM, Operation: 1000, Room: "live://1000", Msg: []byte(`{"a":1}`)},
			wantKey: "live://1000",
		},
		{
			name:    "BROADCAST is keyed by operation",
			msg:     &logic.PushMsg{Type: logic.PushMsg_BROADCAST, Operation: 1001, Speed: 50, Msg: []byte("all")},
			wantKey: "1001",
		},
		{
			name:    "a caller's msg_id is kept",
			msg:     &logic.PushMsg{Type: logic.PushMsg_ROOM, Operation: 7, Room: "chat://x", Msg: []byte("m"), MsgId: "caller-id-1"},
			wantKey: "chat://x",
		},
		{
			name:    "empty body",
			msg:     &logic.PushMsg{Type: logic.PushMsg_BROADCAST, Operation: 0},
			wantKey: "0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cluster, topic := startKafka(t, partitions)
			k := newTestKafka(t, cluster.ListenAddrs(), topic, nil)
			callerID := tt.msg.MsgId
			if err := k.Publish(context.Background(), tt.msg); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			switch {
			case callerID != "" && tt.msg.MsgId != callerID:
				t.Errorf("msg_id = %q, want the caller's %q", tt.msg.MsgId, callerID)
			case callerID == "" && !msgIDPattern.MatchString(tt.msg.MsgId):
				t.Errorf("msg_id = %q, want 32 hex digits", tt.msg.MsgId)
			}
			recs := consume(t, cluster.ListenAddrs(), topic, 1)
			rec := recs[0]
			if string(rec.Key) != tt.wantKey {
				t.Errorf("record key = %q, want %q", rec.Key, tt.wantKey)
			}
			if want := wantPartition(t, tt.wantKey, partitions); rec.Partition != want {
				t.Errorf("partition = %d, want %d (FNV-1a hash of the key)", rec.Partition, want)
			}
			if got := decodePush(t, rec); !proto.Equal(got, tt.msg) {
				t.Errorf("decoded = %v, want %v", got, tt.msg)
			}
		})
	}
}

func TestPublishPartitionOrder(t *testing.T) {
	// Every push of one room (or to one comet) lands on one partition, in
	// publish order.
	const partitions = 8
	cluster, topic := startKafka(t, partitions)
	k := newTestKafka(t, cluster.ListenAddrs(), topic, nil)
	ctx := context.Background()
	const rounds = 5
	var keys []string
	for round := 0; round < rounds; round++ {
		for i := 0; i < 6; i++ {
			room := "live://" + strconv.Itoa(i)
			msg := &logic.PushMsg{Type: logic.PushMsg_ROOM, Room: room, Msg: []byte(strconv.Itoa(round))}
			if err := k.Publish(ctx, msg); err != nil {
				t.Fatalf("Publish room: %v", err)
			}
		}
		for i := 0; i < 2; i++ {
			server := "comet-" + strconv.Itoa(i)
			msg := &logic.PushMsg{Type: logic.PushMsg_PUSH, Server: server, Keys: []string{"k"}, Msg: []byte(strconv.Itoa(round))}
			if err := k.Publish(ctx, msg); err != nil {
				t.Fatalf("Publish push: %v", err)
			}
		}
	}
	for i := 0; i < 6; i++ {
		keys = append(keys, "live://"+strconv.Itoa(i))
	}
	keys = append(keys, "comet-0", "comet-1")

	recs := consume(t, cluster.ListenAddrs(), topic, rounds*len(keys))
	partitionOf := map[string]int32{}
	next := map[string]int{} // the round expected next for a key
	lastOffset := map[string]int64{}
	for _, rec := range recs {
		key := string(rec.Key)
		if p, seen := partitionOf[key]; seen && p != rec.Partition {
			t.Errorf("key %q on partitions %d and %d", key, p, rec.Partition)
		}
		partitionOf[key] = rec.Partition
		if off, seen := lastOffset[key]; seen && rec.Offset <= off {
			t.Errorf("key %q: offset %d after %d", key, rec.Offset, off)
		}
		lastOffset[key] = rec.Offset
		m := decodePush(t, rec)
		if got := string(m.Msg); got != strconv.Itoa(next[key]) {
			t.Errorf("key %q: got round %s, want %d (out of order)", key, got, next[key])
		}
		next[key]++
	}
	for _, key := range keys {
		if next[key] != rounds {
			t.Errorf("key %q: %d records, want %d", key, next[key], rounds)
		}
		if want := wantPartition(t, key, partitions); partitionOf[key] != want {
			t.Errorf("key %q on partition %d, want %d", key, partitionOf[key], want)
		}
	}
}

func TestPublishConcurrent(t *testing.T) {
	cluster, topic := startKafka(t, 4)
	k := newTestKafka(t, cluster.ListenAddrs(), topic, nil)
	const workers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				msg := &logic.PushMsg{Type: logic.PushMsg_ROOM, Room: fmt.Sprintf("live://%d", w), Msg: []byte(strconv.Itoa(i))}
				if err := k.Publish(context.Background(), msg); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Publish: %v", err)
	}
	ids := map[string]bool{}
	for _, rec := range consume(t, cluster.ListenAddrs(), topic, workers*each) {
		id := decodePush(t, rec).MsgId
		if ids[id] {
			t.Errorf("msg_id %s twice", id)
		}
		ids[id] = true
	}
}

func TestPublishInvalid(t *testing.T) {
	// Rejected before any connection: the brokers do not even exist.
	k := newTestKafka(t, []string{"127.0.0.1:" + strconv.Itoa(freePort(t))}, "t", nil)
	tests := []struct {
		name string
		msg  *logic.PushMsg
	}{
		{name: "nil message", msg: nil},
		{name: "PUSH without server", msg: &logic.PushMsg{Type: logic.PushMsg_PUSH, Keys: []string{"k"}}},
		{name: "PUSH without keys", msg: &logic.PushMsg{Type: logic.PushMsg_PUSH, Server: "s"}},
		{name: "ROOM without room", msg: &logic.PushMsg{Type: logic.PushMsg_ROOM}},
		{name: "unknown type", msg: &logic.PushMsg{Type: logic.PushMsg_Type(9), Room: "r"}},
		{name: "larger than max_message_bytes", msg: &logic.PushMsg{Type: logic.PushMsg_ROOM, Room: "r", Msg: make([]byte, 1000001)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := k.Publish(context.Background(), tt.msg)
			if !errors.Is(err, dao.ErrInvalidArgument) || errors.Is(err, dao.ErrKafka) {
				t.Fatalf("Publish = %v, want ErrInvalidArgument and not ErrKafka", err)
			}
		})
	}
}

func TestPublishUnavailable(t *testing.T) {
	// Kafka down, gone or hung: Publish fails with ErrKafka within the
	// timeout, and never reports success.
	const timeout = time.Second
	room := &logic.PushMsg{Type: logic.PushMsg_ROOM, Room: "live://1", Msg: []byte("x")}
	publisher := func(t *testing.T, brokers []string, topic string) *dao.Kafka {
		return newTestKafka(t, brokers, topic, func(c *dao.KafkaConfig) { c.Timeout = conf.Duration(timeout) })
	}
	tests := []struct {
		name   string
		setup  func(t *testing.T) *dao.Kafka
		ctx    func() (context.Context, context.CancelFunc) // nil: background
		wantIs error                                        // besides ErrKafka
	}{
		{
			name: "cluster closed after a publish",
			setup: func(t *testing.T) *dao.Kafka {
				cluster, topic := startKafka(t, 2)
				k := publisher(t, cluster.ListenAddrs(), topic)
				if err := k.Publish(context.Background(), proto.Clone(room).(*logic.PushMsg)); err != nil {
					t.Fatalf("Publish while up: %v", err)
				}
				cluster.Close()
				return k
			},
		},
		{
			name: "no broker listening",
			setup: func(t *testing.T) *dao.Kafka {
				return publisher(t, []string{"127.0.0.1:" + strconv.Itoa(freePort(t))}, "t")
			},
		},
		{
			name: "broker accepts and never answers",
			setup: func(t *testing.T) *dao.Kafka {
				return publisher(t, []string{silentServer(t)}, "t")
			},
			wantIs: context.DeadlineExceeded,
		},
		{
			name: "caller's context already cancelled",
			setup: func(t *testing.T) *dao.Kafka {
				cluster, topic := startKafka(t, 2)
				return publisher(t, cluster.ListenAddrs(), topic)
			},
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			wantIs: context.Canceled,
		},
		{
			name: "caller's deadline sooner than the timeout",
			setup: func(t *testing.T) *dao.Kafka {
				return publisher(t, []string{silentServer(t)}, "t")
			},
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 300*time.Millisecond)
			},
			wantIs: context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := tt.setup(t)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			for attempt := 1; attempt <= 2; attempt++ {
				start := time.Now()
				err := k.Publish(ctx, proto.Clone(room).(*logic.PushMsg))
				elapsed := time.Since(start)
				if err == nil {
					t.Fatalf("attempt %d: Publish succeeded with Kafka unavailable", attempt)
				}
				if !errors.Is(err, dao.ErrKafka) {
					t.Errorf("attempt %d: Publish = %v, want ErrKafka", attempt, err)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("attempt %d: Publish = %v, want it to wrap %v", attempt, err, tt.wantIs)
				}
				if elapsed > timeout+time.Second {
					t.Errorf("attempt %d: Publish failed after %v, want within the %v timeout", attempt, elapsed, timeout)
				}
				t.Logf("attempt %d: %v (after %v)", attempt, err, elapsed.Round(time.Millisecond))
			}
		})
	}
}

func TestKafkaClose(t *testing.T) {
	cluster, topic := startKafka(t, 2)
	k := newTestKafka(t, cluster.ListenAddrs(), topic, nil)
	ctx := context.Background()
	if err := k.Publish(ctx, &logic.PushMsg{Type: logic.PushMsg_BROADCAST, Operation: 3}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	err := k.Publish(ctx, &logic.PushMsg{Type: logic.PushMsg_BROADCAST, Operation: 3})
	if !errors.Is(err, dao.ErrKafka) || !errors.Is(err, dao.ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrKafka and ErrClosed", err)
	}

	// Close of a publisher that never connected returns at once.
	idle := newTestKafka(t, cluster.ListenAddrs(), topic, nil)
	if err := idle.Close(); err != nil {
		t.Fatalf("Close of an idle publisher: %v", err)
	}
}

func TestKafkaCloseDuringPublishes(t *testing.T) {
	// Close while publishes are in flight: each Publish ends with a success
	// or an error (no panic on the closed producer, no hang), and Close
	// waits for the producer's goroutines.
	cluster, topic := startKafka(t, 4)
	k := newTestKafka(t, cluster.ListenAddrs(), topic, nil)
	var (
		wg   sync.WaitGroup
		sent atomic.Int64
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := k.Publish(context.Background(), &logic.PushMsg{Type: logic.PushMsg_ROOM, Room: "live://1"})
				if errors.Is(err, dao.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Publish during Close: %v", err)
					return
				}
				sent.Add(1)
			}
		}()
	}
	waitFor(t, 10*time.Second, func() error {
		if n := sent.Load(); n < 20 {
			return fmt.Errorf("%d publishes so far", n)
		}
		return nil
	})
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
}

func TestPublishRecovers(t *testing.T) {
	// The same publisher works again once Kafka is back on its address,
	// and the pushes that failed meanwhile were reported as failures.
	port := freePort(t)
	topic := "goim-push-test-" + randomHex(4)
	start := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic), kfake.Ports(port))
		if err != nil {
			t.Fatalf("kfake on port %d: %v", port, err)
		}
		t.Cleanup(c.Close)
		return c
	}
	cluster := start()
	k := newTestKafka(t, cluster.ListenAddrs(), topic, func(c *dao.KafkaConfig) { c.Timeout = conf.Duration(time.Second) })
	ctx := context.Background()
	msg := func() *logic.PushMsg {
		return &logic.PushMsg{Type: logic.PushMsg_ROOM, Room: "live://1", Msg: []byte("x")}
	}
	if err := k.Publish(ctx, msg()); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	cluster.Close()
	if err := k.Publish(ctx, msg()); !errors.Is(err, dao.ErrKafka) {
		t.Fatalf("Publish with the cluster closed = %v, want ErrKafka", err)
	}
	cluster = start()
	var last *logic.PushMsg
	waitFor(t, 30*time.Second, func() error {
		last = msg()
		return k.Publish(ctx, last)
	})
	recs := consume(t, cluster.ListenAddrs(), topic, 1)
	if got := decodePush(t, recs[0]); got.MsgId != last.MsgId {
		t.Errorf("record msg_id %s, want the acknowledged push's %s", got.MsgId, last.MsgId)
	}
}

// daoGoroutine returns the stack of a goroutine running the publisher's or
// sarama's code, or "".
func daoGoroutine() string {
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "logic/dao.(*Kafka)") || strings.Contains(g, "IBM/sarama.") {
			return g
		}
	}
	return ""
}

func TestKafkaCloseLeavesNoGoroutines(t *testing.T) {
	cluster, topic := startKafka(t, 2)
	k := newTestKafka(t, cluster.ListenAddrs(), topic, nil)
	if err := k.Publish(context.Background(), &logic.PushMsg{Type: logic.PushMsg_BROADCAST}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if daoGoroutine() == "" {
		t.Fatal("no producer goroutine found while the producer runs: the check below would prove nothing")
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The dispatcher and connect goroutines are waited for by Close;
	// sarama's own end with the producer's client, shortly after.
	waitFor(t, 5*time.Second, func() error {
		if g := daoGoroutine(); g != "" {
			return fmt.Errorf("goroutine left after Close:\n%s", g)
		}
		return nil
	})
}

func TestKafkaPing(t *testing.T) {
	cluster, topic := startKafka(t, 2)
	k := newTestKafka(t, cluster.ListenAddrs(), topic, nil)
	ctx := context.Background()
	// The first Ping connects the producer.
	if err := k.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	// Concurrent Pings share a probe or the cached success.
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if err := k.Ping(ctx); err != nil {
					t.Errorf("concurrent Ping: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Ping published nothing: the first record is the first push.
	msg := &logic.PushMsg{Type: logic.PushMsg_BROADCAST, Operation: 5}
	if err := k.Publish(ctx, msg); err != nil {
		t.Fatalf("Publish after Ping: %v", err)
	}
	recs := consume(t, cluster.ListenAddrs(), topic, 1)
	if got := decodePush(t, recs[0]); recs[0].Offset != 0 || got.MsgId != msg.MsgId {
		t.Errorf("first record = %v at offset %d, want the push %s at offset 0", got, recs[0].Offset, msg.MsgId)
	}
}

func TestKafkaPingUnavailable(t *testing.T) {
	const timeout = time.Second
	pinger := func(t *testing.T, brokers []string, topic string) *dao.Kafka {
		return newTestKafka(t, brokers, topic, func(c *dao.KafkaConfig) { c.Timeout = conf.Duration(timeout) })
	}
	tests := []struct {
		name   string
		setup  func(t *testing.T) *dao.Kafka
		ctx    func() (context.Context, context.CancelFunc) // nil: background
		wantIs error                                        // besides ErrKafka
	}{
		{
			name: "no broker listening",
			setup: func(t *testing.T) *dao.Kafka {
				return pinger(t, []string{"127.0.0.1:" + strconv.Itoa(freePort(t))}, "t")
			},
		},
		{
			name: "broker accepts and never answers",
			setup: func(t *testing.T) *dao.Kafka {
				return pinger(t, []string{silentServer(t)}, "t")
			},
			wantIs: context.DeadlineExceeded,
		},
		{
			name: "caller's deadline sooner than the timeout",
			setup: func(t *testing.T) *dao.Kafka {
				return pinger(t, []string{silentServer(t)}, "t")
			},
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 300*time.Millisecond)
			},
			wantIs: context.DeadlineExceeded,
		},
		{
			name: "topic does not exist",
			setup: func(t *testing.T) *dao.Kafka {
				cluster, _ := startKafka(t, 1)
				return pinger(t, cluster.ListenAddrs(), "goim-missing-"+randomHex(4))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := tt.setup(t)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			for attempt := 1; attempt <= 2; attempt++ {
				start := time.Now()
				err := k.Ping(ctx)
				elapsed := time.Since(start)
				if !errors.Is(err, dao.ErrKafka) {
					t.Fatalf("attempt %d: Ping = %v, want ErrKafka", attempt, err)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("attempt %d: Ping = %v, want it to wrap %v", attempt, err, tt.wantIs)
				}
				if elapsed > timeout+time.Second {
					t.Errorf("attempt %d: Ping failed after %v, want within the %v timeout", attempt, elapsed, timeout)
				}
				t.Logf("attempt %d: %v (after %v)", attempt, err, elapsed.Round(time.Millisecond))
			}
		})
	}
}

func TestKafkaPingClusterGone(t *testing.T) {
	// A connected producer whose cluster goes away stops answering Ping
	// (once the cached success is older than a second).
	cluster, topic := startKafka(t, 2)
	k := newTestKafka(t, cluster.ListenAddrs(), topic, func(c *dao.KafkaConfig) { c.Timeout = conf.Duration(time.Second) })
	ctx := context.Background()
	if err := k.Ping(ctx); err != nil {
		t.Fatalf("Ping while up: %v", err)
	}
	cluster.Close()
	waitFor(t, 15*time.Second, func() error {
		err := k.Ping(ctx)
		if err == nil {
			return errors.New("Ping still succeeds")
		}
		if !errors.Is(err, dao.ErrKafka) {
			t.Fatalf("Ping = %v, want ErrKafka", err)
		}
		return nil
	})
}

func TestKafkaPingAfterClose(t *testing.T) {
	cluster, topic := startKafka(t, 2)
	ctx := context.Background()
	tests := []struct {
		name      string
		pingFirst bool
	}{
		{name: "connected", pingFirst: true},
		{name: "never connected", pingFirst: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newTestKafka(t, cluster.ListenAddrs(), topic, nil)
			if tt.pingFirst {
				if err := k.Ping(ctx); err != nil {
					t.Fatalf("Ping: %v", err)
				}
			}
			if err := k.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			// Even within the cached success's second.
			err := k.Ping(ctx)
			if !errors.Is(err, dao.ErrKafka) || !errors.Is(err, dao.ErrClosed) {
				t.Fatalf("Ping after Close = %v, want ErrKafka and ErrClosed", err)
			}
		})
	}
}

func TestKafkaCloseDuringPings(t *testing.T) {
	// Close while Pings run: each ends, with nil or an error, and Close
	// waits for the probe goroutines.
	cluster, topic := startKafka(t, 2)
	k := newTestKafka(t, cluster.ListenAddrs(), topic, nil)
	if err := k.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := k.Ping(context.Background())
				if errors.Is(err, dao.ErrClosed) {
					return
				}
				if err != nil && !errors.Is(err, dao.ErrKafka) {
					t.Errorf("Ping during Close = %v, want nil or ErrKafka", err)
					return
				}
			}
		}()
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	waitFor(t, 5*time.Second, func() error {
		if g := daoGoroutine(); g != "" {
			return fmt.Errorf("goroutine left after Close:\n%s", g)
		}
		return nil
	})
}

func TestKafkaPingHungMetadata(t *testing.T) {
	// A broker that stops answering metadata requests after the producer
	// connected: Ping gives up at the caller's deadline, and Close still
	// ends, after waiting for the probe left in flight (bounded by the
	// read timeout, Timeout).
	cluster, topic := startKafka(t, 2)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the cluster closes
	k := newTestKafka(t, cluster.ListenAddrs(), topic, func(c *dao.KafkaConfig) { c.Timeout = conf.Duration(time.Second) })
	if err := k.Ping(context.Background()); err != nil {
		t.Fatalf("Ping while up: %v", err)
	}
	cluster.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		cluster.SleepControl(func() { <-release })
		return nil, nil, false
	})
	waitFor(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := k.Ping(ctx)
		if err == nil {
			return errors.New("Ping still succeeds (cached)")
		}
		if !errors.Is(err, dao.ErrKafka) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Ping = %v, want ErrKafka and DeadlineExceeded", err)
		}
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Errorf("Ping failed after %v, want about the caller's 300ms", elapsed)
		}
		return nil
	})
	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- k.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
		t.Logf("Close returned after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return with a metadata request hung")
	}
	if err := k.Ping(context.Background()); !errors.Is(err, dao.ErrClosed) {
		t.Errorf("Ping after Close = %v, want ErrClosed", err)
	}
}
