package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/cluster"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

// The benchmarks put a backlog of b.N pushes in Kafka (kfake, in the test
// process), then start job as its own process and time it, and its CPU
// (from /proc), until every push reached the clients of a real comet (also
// in the test process). Run them with a fixed count:
//
//	go test -run x -bench Process -benchtime 100000x ./cmd/job/

// produce writes msgs to the cluster's topic, keyed as logic keys them.
func produce(b *testing.B, c *cluster.Cluster, msgs []*logicpb.PushMsg) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Kafka.ListenAddrs()...), kgo.DefaultProduceTopic(c.Topic))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, 0, 1000)
	flush := func() {
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		recs = recs[:0]
	}
	for _, m := range msgs {
		v, err := proto.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		key := m.Server
		if m.Type == logicpb.PushMsg_ROOM {
			key = m.Room
		}
		recs = append(recs, &kgo.Record{Key: []byte(key), Value: v})
		if len(recs) == cap(recs) {
			flush()
		}
	}
	if len(recs) > 0 {
		flush()
	}
}

// drain starts job on the backlog and reports pushes per second and per
// job CPU-second once the clients received want pushes in all.
func drain(b *testing.B, c *cluster.Cluster, clients []*cluster.Client, want int) {
	b.ResetTimer()
	start := time.Now()
	p := startProcess(b, c, "job-bench-"+testkit.RandomHex(4))
	total := func() int {
		n := 0
		for _, r := range clients {
			n += r.Count()
		}
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for total() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d deliveries\n%s\n%s", total(), want, p.logs.String(), jobMetrics(p))
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu := testkit.ProcessCPU(b, p.cmd.Process.Pid)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pushes/s")
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "pushes/job-cpu-s")
	b.ReportMetric(float64(want)/elapsed.Seconds(), "deliveries/s")
}

// BenchmarkProcessUnicast: keys pushes to 100 connections of one comet.
func BenchmarkProcessUnicast(b *testing.B) {
	c := cluster.Start(b, 1)
	const keys = 100
	var clients []*cluster.Client
	for i := range keys {
		clients = append(clients, c.Dial("comet-1", "tcp", fmt.Sprintf(`{"mid":%d,"key":"k%d","accepts":[1000]}`, i+1, i)))
	}
	msgs := make([]*logicpb.PushMsg, b.N)
	for i := range msgs {
		msgs[i] = &logicpb.PushMsg{Type: logicpb.PushMsg_PUSH, Operation: 1000, Server: "comet-1",
			Keys: []string{fmt.Sprintf("k%d", i%keys)}, Msg: []byte("unicast push body 0123456789"), MsgId: fmt.Sprint(i)}
	}
	produce(b, c, msgs)
	drain(b, c, clients, b.N)
}

// BenchmarkProcessRoom: room pushes to 4 rooms of 25 connections each.
func BenchmarkProcessRoom(b *testing.B) {
	c := cluster.Start(b, 1)
	const rooms, members = 4, 25
	var clients []*cluster.Client
	for i := range rooms * members {
		clients = append(clients, c.Dial("comet-1", "tcp", fmt.Sprintf(`{"mid":%d,"room_id":"live://%d","accepts":[]}`, i+1, i%rooms)))
	}
	msgs := make([]*logicpb.PushMsg, b.N)
	for i := range msgs {
		msgs[i] = &logicpb.PushMsg{Type: logicpb.PushMsg_ROOM, Operation: 1000, Room: fmt.Sprintf("live://%d", i%rooms),
			Msg: []byte("room push body 0123456789"), MsgId: fmt.Sprint(i)}
	}
	produce(b, c, msgs)
	drain(b, c, clients, b.N*members)
}

// jobMetrics returns job's goim_ metrics, for a failure message.
func jobMetrics(p *proc) string {
	resp, err := http.Get("http://" + p.adminAddr + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "goim_") && !strings.Contains(l, "_bucket") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
