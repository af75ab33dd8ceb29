package client_test

import (
	"context"
	"fmt"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
)

// The waits logic's default hint gives a client's first reconnect
// attempts, without jitter (r = 0.5), and the spread of the first one.
func ExampleBackoff_Delay() {
	for n := range 4 {
		fmt.Println(client.DefaultBackoff.Delay(n, 0.5).Round(1e6))
	}
	fmt.Println(client.DefaultBackoff.Delay(0, 0).Round(1e6), "to", client.DefaultBackoff.Delay(0, 1).Round(1e6))
	fmt.Println(client.DefaultBackoff.Delay(100, 0.5))
	// Output:
	// 3s
	// 5.4s
	// 9.72s
	// 17.496s
	// 2.1s to 3.9s
	// 5m0s
}

// A client that asks logic for a comet, joins a room and prints what is
// pushed to it; it reconnects by itself until Close.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, client.Config{
		API:       exampleAPI(), // logic's HTTP base URL, "http://logic:3111"
		Transport: client.WS,
		Auth:      client.Auth{Mid: 1, RoomID: "live://1000", Platform: "web", Accepts: []int32{1000}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	pushRoom("live://1000", "hello, room")
	m := <-c.Messages()
	fmt.Printf("op %d: %s\n", m.Op, m.Body)
	// Output: op 1000: hello, room
}

// Connect with fixed comet addresses, a message callback and state
// reports.
func ExampleConnect() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan string, 1)
	c, err := client.Connect(ctx, client.Config{
		Addrs: []string{exampleComet()},
		Auth:  client.Auth{Mid: 2, RoomID: "live://1001", Platform: "android", Accepts: []int32{1000}},
		OnMessage: func(m client.Message) {
			got <- string(m.Body) // called in order, from one goroutine
		},
		OnState: func(s client.State, err error) {
			fmt.Println("state:", s)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	pushRoom("live://1001", "hello")
	fmt.Println("message:", <-got)
	c.Close()
	// Output:
	// state: connecting
	// state: connected
	// message: hello
	// state: closed
}

// Moving to another room: pushes to the new room arrive, and a reconnect
// joins it.
func ExampleClient_ChangeRoom() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, client.Config{
		API:  exampleAPI(),
		Auth: client.Auth{Mid: 3, RoomID: "live://1002", Platform: "ios"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if err := c.ChangeRoom(ctx, "live://1003"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("room:", c.Room())
	pushRoom("live://1003", "in the new room")
	fmt.Printf("%s\n", (<-c.Messages()).Body)
	// Output:
	// room: live://1003
	// in the new room
}

// Accepting one more op for the user's pushes.
func ExampleClient_Sub() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, client.Config{
		API:  exampleAPI(),
		Auth: client.Auth{Mid: 4, Platform: "web", Accepts: []int32{1000}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if err := c.Sub(ctx, 2000); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("accepts:", c.Accepts())
	pushMid(4, 2000, "op 2000 for user 4")
	m := <-c.Messages()
	fmt.Printf("op %d: %s\n", m.Op, m.Body)
	// Output:
	// accepts: [1000 2000]
	// op 2000: op 2000 for user 4
}

// The low level: one connection, read by the caller, heartbeated by the
// caller, no reconnect.
func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes, err := client.FetchNodes(ctx, nil, exampleAPI(), "web")
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := client.Dial(ctx, nodes.TCP[0], client.Auth{Mid: 5, RoomID: "live://1004", Platform: "web"}, client.DialOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if err := c.Heartbeat(); err != nil { // and every nodes.Heartbeat
		fmt.Println(err)
		return
	}
	// read reads frames until one of op arrives.
	read := func(op int32) error {
		for done := false; !done; {
			err := c.ReadFrames(func(f client.Frame) {
				switch {
				case f.Op != op:
				case op == 3:
					fmt.Println("heartbeat reply") // its body: the room's online count
					done = true
				default:
					fmt.Printf("op %d: %s\n", f.Op, f.Body) // f.Body is valid during the call only
					done = true
				}
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := read(3); err != nil {
		fmt.Println(err)
		return
	}
	pushRoom("live://1004", "low level")
	if err := read(1000); err != nil {
		fmt.Println(err)
	}
	// Output:
	// heartbeat reply
	// op 1000: low level
}

// A reliable client: it opts in, learns its streams (op 20), receives
// pushes with their id and position, and comes back after a drop with its
// positions: the comet replays what it missed (acks are automatic). An
// application would persist Positions (json.Marshal) and pass them as
// Config.Since at its next start.
func ExampleClient_Positions() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	connect := func(since *protocol.Since) (*client.Client, error) {
		return client.Connect(ctx, client.Config{
			Addrs:    []string{exampleComet()},
			Auth:     client.Auth{Mid: 1001, Accepts: []int32{1000}},
			Reliable: true,
			Since:    since,
		})
	}
	show := func(m client.Message) {
		if m.Op == protocol.OpStreams {
			for _, s := range m.Streams {
				if s.Stream == protocol.StreamUser {
					fmt.Printf("user stream at offset %d, recovered %v\n", s.Offset, s.Recovered)
				}
			}
			return
		}
		fmt.Printf("op %d: %s (stream %s, offset %d)\n", m.Op, m.Body, protocol.StreamName(m.Stream), m.Offset)
	}
	c, err := connect(nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	show(<-c.Messages()) // the report: a new stream, nothing to recover
	pushMid(1001, 1000, "first")
	show(<-c.Messages())
	since := c.Positions()
	c.Close()

	pushMid(1001, 1000, "while away")
	if c, err = connect(since); err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	show(<-c.Messages()) // the report: everything after since follows
	show(<-c.Messages())
	// Output:
	// user stream at offset 0, recovered false
	// op 1000: first (stream user, offset 1)
	// user stream at offset 2, recovered true
	// op 1000: while away (stream user, offset 2)
}
