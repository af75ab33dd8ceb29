package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/testkit"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

// testKafkaOutage stops a Kafka broker under a running logic. Closing the
// suite's own kfake would end job's consumer group too, so the outage is
// staged on a second broker (kfake persisting to a directory) with a
// second logic process publishing to it; the second logic shares Redis
// and its key prefix, so keys and mids pushes find the suite's clients
// and do reach the publish step. The broker comes back on the same port
// with the same data, as a restarted Kafka broker would.
func testKafkaOutage(t *testing.T, c *cluster) {
	addrs := freeAddrs(t, 4)
	_, p, _ := net.SplitHostPort(addrs[0])
	port, _ := strconv.Atoi(p)
	dir := t.TempDir()
	topic := "goim-push-e2e-kafka-" + testkit.RandomHex(4)
	broker := func(opts ...kfake.Opt) *kfake.Cluster {
		k, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir)}, opts...)...)
		if err != nil {
			t.Fatalf("kfake on port %d: %v", port, err)
		}
		t.Cleanup(k.Close)
		return k
	}
	k := broker(kfake.SeedTopics(2, topic))

	httpAddr, rpcAddr, admin := addrs[1], addrs[2], addrs[3]
	api := "http://" + httpAddr
	path := c.writeConf(t, "logic-kafka", `host = "logic-e2e-kafka"
shutdown_timeout = "5s"
[http]
bind = "`+httpAddr+`"
`+c.httpCredentials()+`[rpc]
bind = "`+rpcAddr+`"
`+c.rpcSecretConf()+`[auth]
insecure = true
[redis]
addr = "`+c.redis.Addr()+`"
prefix = "`+c.prefix+`"
[kafka]
brokers = ["127.0.0.1:`+strconv.Itoa(port)+`"]
topic = "`+topic+`"
# A push waits at most this for Kafka, then answers -500.
timeout = "2s"
[admin]
addr = "`+admin+`"
`)
	logic2 := startProcess(t, t, "logic-kafka", c.bin.logic, "-conf", path)
	waitReady(t, logic2, admin)
	pushOK(t, api+"/goim/push/room?operation=1000&type=live&room=kafka", "kafka:before")

	k.Close()
	down := time.Now()
	// Every kind of push answers 500 / -500, concurrently (each waits up
	// to kafka.timeout).
	paths := []string{
		"/goim/push/room?operation=1000&type=live&room=kafka",
		"/goim/push/keys?operation=1000&keys=c1w",
		"/goim/push/mids?operation=1000&mids=1",
		"/goim/push/all?operation=1000",
	}
	answers := make([]response, len(paths))
	errs := make([]error, len(paths))
	took := make([]time.Duration, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Go(func() {
			began := time.Now()
			answers[i], errs[i] = post(api+p, "kafka:down:"+strconv.Itoa(i))
			took[i] = time.Since(began)
		})
	}
	wg.Wait()
	for i, p := range paths {
		if errs[i] != nil {
			t.Fatalf("POST %s: %v", p, errs[i])
		}
		e := answers[i].envelope(t, "POST "+p+" with Kafka down", -500, false)
		t.Logf("kafka: %s answered -500 after %v: %s", p, took[i].Round(time.Millisecond), e.Message)
	}
	testkit.WaitFor(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz %d with Kafka down", resp.StatusCode)
		}
		return nil
	})

	// The broker is back on the same port with its data: logic recovers
	// by itself.
	k = broker()
	back := time.Now()
	var last time.Time
	attempts, okBody := 0, ""
	testkit.WaitFor(t, 30*time.Second, func() error {
		logic2.failIfExited(t)
		if time.Since(last) < 200*time.Millisecond {
			return fmt.Errorf("no push answered 0 after %d attempts", attempts)
		}
		last = time.Now()
		attempts++
		body := "kafka:after:" + strconv.Itoa(attempts)
		status, code, err := pushAnswer(api+"/goim/push/room?operation=1000&type=live&room=kafka", body)
		switch {
		case err != nil:
			return err
		case (status == 200) != (code == 0):
			t.Fatalf("push answered HTTP %d with code %d", status, code)
		case code != 0:
			return fmt.Errorf("attempt %d: HTTP %d code %d", attempts, status, code)
		}
		okBody = body
		return nil
	})
	recovered := time.Since(back)
	waitReady(t, logic2, admin)
	// What was acknowledged before the outage and after it is in the topic.
	waitTopicBodies(t, k.ListenAddrs(), topic, "kafka:before", okBody)
	t.Logf("kafka: broker down for %v; back on the same port, a push answered 0 %v later (%d attempts); both acknowledged pushes are in the topic",
		back.Sub(down).Round(time.Millisecond), recovered.Round(time.Millisecond), attempts)
}

// waitTopicBodies reads topic from the start until a PushMsg with each of
// the bodies was seen, failing after 15 s.
func waitTopicBodies(t *testing.T, brokers []string, topic string, bodies ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	missing := map[string]bool{}
	for _, b := range bodies {
		missing[b] = true
	}
	for len(missing) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("topic %s lacks %v", topic, missing)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var m logicpb.PushMsg
			if err := proto.Unmarshal(r.Value, &m); err != nil {
				t.Errorf("record at offset %d: %v", r.Offset, err)
				return
			}
			delete(missing, string(m.GetMsg()))
		})
	}
}
