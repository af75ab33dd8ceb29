package comet

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/goim/goim/api/protocol"
)

// TestReadLoopFreshStacks: a read loop moves to a fresh goroutine each
// time it has handled frames and waits for more; the old goroutine ends
// (the count does not grow), and nothing is lost on the way, also when
// frames arrive back to back in one segment.
func TestReadLoopFreshStacks(t *testing.T) {
	e := startComet(t, nil)
	clients := []*client{dial(t, e, "tcp"), dial(t, e, "ws")}
	for i, c := range clients {
		c.auth(fmt.Sprintf(`{"key":"fresh-%d","room_id":"live://fresh","accepts":[]}`, i))
	}
	before := runtime.NumGoroutine()
	for range 30 {
		for _, c := range clients {
			seq := c.send(protocol.OpHeartbeat, nil)
			c.expect(protocol.OpHeartbeatReply, seq)
		}
	}
	// Three frames in one write: handled by one goroutine without waiting.
	tcp := clients[0]
	var b []byte
	for seq := int32(100); seq < 103; seq++ {
		b = (&protocol.Proto{Ver: 1, Op: protocol.OpHeartbeat, Seq: seq}).AppendTCP(b)
	}
	tcp.sendRaw(b)
	for seq := int32(100); seq < 103; seq++ {
		tcp.expect(protocol.OpHeartbeatReply, seq)
	}
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Fatalf("%d goroutines after 60 heartbeats, %d before", after, before)
	}
}
