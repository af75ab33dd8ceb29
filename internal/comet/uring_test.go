//go:build linux

package comet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/goim/goim/api/protocol"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"
)

// testRing returns a fan-out ring, closed when the test ends; it skips
// the test where none can be set up.
func testRing(t *testing.T) *ioURing {
	t.Helper()
	r, err := newFanoutRing()
	if err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	t.Cleanup(r.close)
	return r
}

// tcpPairs opens n loopback TCP connections and returns the dialled ends
// (kept open until the test ends) and their accepted peers.
func tcpPairs(t *testing.T, n int) (near []*net.TCPConn, far []net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		p, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(); _ = p.Close() })
		near, far = append(near, c.(*net.TCPConn)), append(far, p)
	}
	return near, far
}

func tcpFD(t *testing.T, c *net.TCPConn) int32 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := socketFD(rc)
	if fd < 0 {
		t.Fatal("no fd")
	}
	return fd
}

// TestIOURingSend: the ring sends to real sockets. Every byte of a batch
// to many sockets arrives; a batch is at most the ring's size; a socket
// whose peer does not read fills up, and the sends to it then come back
// short or EAGAIN, which sendResult reports as a partial write (no error);
// a send to a socket whose peer closed comes back as an error.
func TestIOURingSend(t *testing.T) {
	r := testRing(t)
	res := make([]int32, r.size())

	t.Run("every byte arrives", func(t *testing.T) {
		const n = 100
		near, far := tcpPairs(t, n)
		var frames [][]byte
		for i := range near {
			frames = append(frames, []byte(fmt.Sprintf("frame %03d %s", i, strings.Repeat("x", i))))
			if !r.prepSend(tcpFD(t, near[i]), frames[i], 0) {
				t.Fatal("batch full")
			}
		}
		if err := r.submit(res); err != nil {
			t.Fatal(err)
		}
		for i := range near {
			if int(res[i]) != len(frames[i]) {
				t.Fatalf("send %d: result %d, want %d", i, res[i], len(frames[i]))
			}
			got := make([]byte, len(frames[i]))
			_ = far[i].SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(far[i], got); err != nil || !bytes.Equal(got, frames[i]) {
				t.Fatalf("peer %d read %q, %v; want %q", i, got, err, frames[i])
			}
		}
	})

	t.Run("a batch holds at most the ring size", func(t *testing.T) {
		near, _ := tcpPairs(t, 1)
		fd, b := tcpFD(t, near[0]), []byte("x")
		for i := range r.size() {
			if !r.prepSend(fd, b, 0) {
				t.Fatalf("send %d refused", i)
			}
		}
		if r.prepSend(fd, b, 0) {
			t.Fatal("one send more than the ring holds was taken")
		}
		if err := r.submit(res); err != nil {
			t.Fatal(err)
		}
		for i := range r.size() {
			if res[i] != 1 {
				t.Fatalf("send %d: result %d", i, res[i])
			}
		}
	})

	t.Run("a full socket sends short", func(t *testing.T) {
		near, far := tcpPairs(t, 1)
		_ = near[0].SetWriteBuffer(4096)
		fd := tcpFD(t, near[0])
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
		sent, short := 0, false
		for i := 0; i < 1000 && !short; i++ {
			r.prepSend(fd, chunk, 0)
			if err := r.submit(res); err != nil {
				t.Fatal(err)
			}
			n, err := sendResult(res[0])
			if err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			sent += n
			short = n < len(chunk)
		}
		if !short {
			t.Fatal("the socket never filled")
		}
		// What was sent arrives whole, in order.
		got := make([]byte, sent)
		_ = far[0].SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(far[0], got); err != nil {
			t.Fatal(err)
		}
		for off := 0; off < sent; off += len(chunk) {
			if end := min(off+len(chunk), sent); !bytes.Equal(got[off:end], chunk[:end-off]) {
				t.Fatalf("bytes %d..%d differ", off, end)
			}
		}
	})

	t.Run("a batch the kernel refuses is withdrawn", func(t *testing.T) {
		near, far := tcpPairs(t, 1)
		fd := tcpFD(t, near[0])
		r.prepSend(fd, []byte("withdrawn"), 0)
		r.prepSend(fd, []byte("withdrawn"), 0)
		ringFD := r.fd
		r.fd = -1 // io_uring_enter fails: EBADF
		err := r.submit(res)
		r.fd = ringFD
		if !errors.Is(err, unix.EBADF) {
			t.Fatalf("submit: %v, want EBADF", err)
		}
		for i := range 2 {
			if n, serr := sendResult(res[i]); res[i] != errSendWithdrawn || n != 0 || serr != nil {
				t.Fatalf("send %d: result %d (%d, %v), want withdrawn: nothing sent, no error", i, res[i], n, serr)
			}
		}
		// The ring goes on with the next batch, without the withdrawn sends.
		r.prepSend(fd, []byte("after"), 0)
		if err := r.submit(res); err != nil || res[0] != 5 {
			t.Fatalf("next batch: %d, %v", res[0], err)
		}
		got := make([]byte, 16)
		_ = far[0].SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := far[0].Read(got); err != nil || string(got[:n]) != "after" {
			t.Fatalf("peer read %q, %v; want %q", got[:n], err, "after")
		}
	})

	t.Run("registered files (the benchmark's sendBatch)", func(t *testing.T) {
		fr, err := newIOURing(8, 0, 0)
		if err != nil {
			t.Skip(err)
		}
		defer fr.close()
		near, far := tcpPairs(t, 2)
		fds := []int{int(tcpFD(t, near[0])), int(tcpFD(t, near[1]))}
		if err := fr.registerFiles(fds); err != nil {
			t.Skip(err)
		}
		frame := []byte("fixed")
		if err := fr.sendBatch(fds, 0, frame, true); err != nil {
			t.Fatal(err)
		}
		for _, p := range far {
			got := make([]byte, len(frame))
			_ = p.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(p, got); err != nil || string(got) != "fixed" {
				t.Fatalf("peer read %q, %v", got, err)
			}
		}
	})

	t.Run("a closed peer is an error", func(t *testing.T) {
		near, far := tcpPairs(t, 1)
		_ = far[0].(*net.TCPConn).SetLinger(0) // close sends RST
		_ = far[0].Close()
		fd := tcpFD(t, near[0])
		var err error
		for i := 0; i < 100 && err == nil; i++ {
			r.prepSend(fd, []byte("after close"), 0)
			if serr := r.submit(res); serr != nil {
				t.Fatal(serr)
			}
			_, err = sendResult(res[0])
			time.Sleep(time.Millisecond)
		}
		if !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
			t.Fatalf("send to a closed peer: %v, want EPIPE or ECONNRESET", err)
		}
	})
}

// roomMember dials tr, authenticates key into room, and returns the client.
func roomMember(t *testing.T, e *testEnv, tr, key, room string) *client {
	t.Helper()
	c := dial(t, e, tr)
	c.auth(fmt.Sprintf(`{"mid":1,"key":%q,"room_id":%q,"accepts":[1000]}`, key, room))
	return c
}

// joinRoom joins n members to room, alternately over TCP and WebSocket.
func joinRoom(t *testing.T, e *testEnv, room string, n int) []*client {
	t.Helper()
	out := make([]*client, n)
	for i := range out {
		out[i] = roomMember(t, e, []string{"tcp", "ws"}[i%2], fmt.Sprintf("%s-m%d", room, i), room)
	}
	return out
}

func pushRoom(t *testing.T, e *testEnv, room, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.BroadcastRoom(ctx, room, &protocol.Proto{Ver: 1, Op: 1000, Body: []byte(body)}); err != nil {
		t.Fatal(err)
	}
}

// readAll reads want frames from every member concurrently and checks each
// got bodies(i) for i = 0..want-1 in order.
func readAll(t *testing.T, members []*client, want int, body func(int) string) {
	t.Helper()
	errs := make(chan error, len(members))
	for _, c := range members {
		go func() {
			for i := range want {
				p, err := c.read()
				if err != nil {
					errs <- fmt.Errorf("%s: frame %d: %w", c.tr, i, err)
					return
				}
				if p.Op != 1000 || string(p.Body) != body(i) {
					errs <- fmt.Errorf("%s: frame %d: op %d body %.20q, want %.20q", c.tr, i, p.Op, p.Body, body(i))
					return
				}
			}
			errs <- nil
		}()
	}
	for range members {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// pushAll pushes "push 0", "push 1", ... to every room in turn, and
// checks that each member receives all of them, in order.
func pushAll(t *testing.T, e *testEnv, rooms []string, members []*client, pushes int) {
	t.Helper()
	body := func(i int) string { return "push " + strconv.Itoa(i) }
	for i := range pushes {
		for _, room := range rooms {
			pushRoom(t, e, room, body(i))
		}
	}
	readAll(t, members, pushes, body)
}

// TestRoomFanoutRing: a room of more than minRingFanout members over TCP
// and WebSocket gets every push, in order, through the ring (the ring
// path counted); with bucket.io_uring off, the same through write(2) (no
// ring send counted).
func TestRoomFanoutRing(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("io_uring=%v", on), func(t *testing.T) {
			if on {
				testRing(t)
			}
			e := startComet(t, func(c *Config) { unlimited(c); c.Bucket.IOURing = on })
			pushAll(t, e, []string{"live://ring"}, joinRoom(t, e, "live://ring", minRingFanout+8), 50)
			ring := testutil.ToFloat64(e.srv.metrics.roomSentRing)
			write := testutil.ToFloat64(e.srv.metrics.roomSentWrite)
			switch {
			case on && ring == 0:
				t.Errorf("no ring send counted (write %v)", write)
			case !on && (ring != 0 || write == 0):
				t.Errorf("io_uring off: %v ring sends, %v write sends", ring, write)
			}
		})
	}
}

// TestRoomFanoutRingSlowMember: a member whose socket is full gets the
// part of a frame its socket did not take, and the frames after it,
// queued for its write loop, and receives them all in order once it
// reads, while the rest of the room is sent through the ring.
func TestRoomFanoutRingSlowMember(t *testing.T) {
	testRing(t)
	e := startComet(t, func(c *Config) { unlimited(c); c.Protocol.QueueFrames = 1024; c.Protocol.QueueBytes = 16 << 20 })
	members := joinRoom(t, e, "live://slow", minRingFanout)
	// members[0], over TCP, reads only once the pushes are made.
	ch := e.srv.bucket("live://slow-m0").get("live://slow-m0")
	setSndBuf := func(n int) {
		if err := ch.rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, n) }); err != nil {
			t.Fatal(err)
		}
	}
	setSndBuf(4096)
	const pushes = 40
	pad := strings.Repeat("p", 16<<10)
	body := func(i int) string { return fmt.Sprintf("%03d %s", i, pad) }
	done := make(chan struct{})
	go func() { // the others read as they go
		defer close(done)
		readAll(t, members[1:], pushes, body)
	}()
	for i := range pushes {
		pushRoom(t, e, "live://slow", body(i))
	}
	<-done
	// The slow member's socket filled: its write loop took over.
	var m dto.Metric
	if err := e.srv.metrics.writeBatch.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.GetHistogram().GetSampleCount() == 0 {
		t.Error("no write loop ran: the slow member's socket never filled")
	}
	setSndBuf(1 << 20) // a buffer this small makes loopback crawl
	readAll(t, members[:1], pushes, body)
	if testutil.ToFloat64(e.srv.metrics.roomSentRing) == 0 {
		t.Error("no ring send counted")
	}
	if n := e.closes(ReasonSlow) + e.closes(ReasonWriteError); n != 0 {
		t.Errorf("%d members closed", n)
	}
}

// TestRingHoldKeepsSocket: while a ring batch holds a channel's writer
// role, closing the channel (from elsewhere, and the reader's cleanup
// after it) only shuts the socket down: the number still names the same
// socket, so the batch's send cannot reach another connection. The
// holder closes it when it gives the role up. With a close frame to
// write, the close is left to the holder entirely: the frame in the
// batch, then the close frame, reach the client.
func TestRingHoldKeepsSocket(t *testing.T) {
	r := testRing(t)
	res := make([]int32, 1)
	e := startComet(t, unlimited)
	f := newFrame(&protocol.Proto{Ver: 1, Op: 1000, Body: []byte("held")})
	// hold connects key over tr and takes its writer role for a ring
	// batch sending b.
	hold := func(t *testing.T, tr, key string) (c *client, ch *Channel, b []byte) {
		t.Helper()
		c = roomMember(t, e, tr, key, "")
		ch = e.srv.bucket(key).get(key)
		b = f.bytes(ch.tr)
		// The handshake's reader gives the writer role up just after the
		// auth reply, which the client may have read already.
		waitFor(t, 5*time.Second, func() error {
			ch.out.mu.Lock()
			defer ch.out.mu.Unlock()
			if ch.out.writing {
				return errors.New("the auth reply's writer still holds the role")
			}
			return nil
		})
		if got := ch.claim(b, true); got != pushInline {
			t.Fatalf("claim: %d, want pushInline", got)
		}
		return c, ch, b
	}
	// send sends b to ch's socket through the ring.
	send := func(t *testing.T, ch *Channel, b []byte) (int, error) {
		t.Helper()
		r.prepSend(ch.out.fd, b, 0)
		if err := r.submit(res); err != nil {
			t.Fatal(err)
		}
		return sendResult(res[0])
	}

	t.Run("close", func(t *testing.T) {
		c, ch, b := hold(t, "tcp", "hold-tcp")
		peer := ch.raw.RemoteAddr().String()
		ch.close(ReasonSlow)
		if _, err := c.read(); !errors.Is(err, io.EOF) {
			t.Fatalf("client read %v, want EOF (the socket shut down)", err)
		}
		waitFor(t, 5*time.Second, func() error { // the reader has cleaned up
			if e.closes(ReasonSlow) != 1 {
				return errors.New("not cleaned up")
			}
			return nil
		})
		// A new connection now would take a freed socket number.
		roomMember(t, e, "tcp", "hold-next", "")
		if err := ch.rc.Control(func(uintptr) {}); err != nil {
			t.Fatalf("socket closed while a ring batch holds it: %v", err)
		}
		sa, err := unix.Getpeername(int(ch.out.fd))
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := sa.(*unix.SockaddrInet4); !ok || fmt.Sprintf("127.0.0.1:%d", a.Port) != peer {
			t.Fatalf("fd %d names the connection from %v, want %s", ch.out.fd, sa, peer)
		}
		n, serr := send(t, ch, b)
		if serr == nil {
			t.Fatalf("send to a shut down socket: %d bytes", n)
		}
		if got := ch.finishRing(b, n, serr); got != pushClosed {
			t.Fatalf("finishRing: %d, want pushClosed", got)
		}
		if err := ch.rc.Control(func(uintptr) {}); err == nil {
			t.Fatal("the holder did not close the socket")
		}
	})

	t.Run("close frame", func(t *testing.T) {
		c, ch, b := hold(t, "ws", "hold-ws")
		ch.closeGoingAway(ReasonDrain)
		if err := ch.rc.Control(func(uintptr) {}); err != nil {
			t.Fatalf("socket closed while a ring batch holds it: %v", err)
		}
		n, serr := send(t, ch, b)
		if serr != nil || n != len(b) {
			t.Fatalf("send: %d, %v", n, serr)
		}
		ch.finishRing(b, n, serr)
		c.expect(1000, 0)
		var ce wsutil.ClosedError
		if err := c.closedWith(); !errors.As(err, &ce) || ce.Code != ws.StatusGoingAway {
			t.Fatalf("closed with %v, want the going-away close frame", err)
		}
		if err := ch.rc.Control(func(uintptr) {}); err == nil {
			t.Fatal("the holder did not close the socket")
		}
	})
}

// TestRingSendNeverReachesAnotherConnection: a member closed by the
// comet while its send waits in a ring batch, and a connection accepted
// right after, which would take the member's socket number had it been
// closed: the batch's send does not reach the new connection, whose
// first frame is its auth reply and then nothing; the other members get
// the push.
func TestRingSendNeverReachesAnotherConnection(t *testing.T) {
	testRing(t)
	held, resume := make(chan *Channel), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { ringBeforeSubmit = nil }) // after the comet has stopped
	ringBeforeSubmit = func(chs []*Channel) {
		once.Do(func() {
			held <- chs[0]
			<-resume
		})
	}
	e := startComet(t, func(c *Config) { unlimited(c); c.Bucket.RoomWorkers = 1 })
	members := joinRoom(t, e, "live://reuse", minRingFanout)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.srv.BroadcastRoom(ctx, "live://reuse", &protocol.Proto{Ver: 1, Op: 1000, Body: []byte("for members only")})
	}()
	var victim *Channel
	select {
	case victim = <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("no ring batch")
	}
	// The newcomer's own socket is made before the member is closed, so
	// that the comet's accepted socket takes the lowest free number: the
	// member's, were it closed.
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	victim.close(ReasonSlow)
	conns := e.srv.limits.conns.Load()
	port := e.srv.Addrs("tcp")[0].(*net.TCPAddr).Port
	if err := unix.Connect(sock, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error { // accepted
		if e.srv.limits.conns.Load() <= conns {
			return errors.New("not accepted")
		}
		return nil
	})
	f := os.NewFile(uintptr(sock), "newcomer")
	conn, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}
	newcomer := &client{t: t, e: e, tr: "tcp", conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { _ = conn.Close() })
	newcomer.auth(`{"mid":2,"key":"newcomer","accepts":[1000]}`)
	if nc := e.srv.bucket("newcomer").get("newcomer"); nc.out.fd == victim.out.fd {
		t.Errorf("the newcomer has the socket number %d of a member a ring batch holds", nc.out.fd)
	}
	close(resume)
	_ = newcomer.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if p := new(protocol.Proto); p.ReadTCP(newcomer.r, 1<<20) == nil {
		t.Fatalf("the newcomer got op %d %q", p.Op, p.Body)
	}
	for i, c := range members {
		if fmt.Sprintf("live://reuse-m%d", i) == victim.key {
			continue
		}
		if p := c.expect(1000, 0); string(p.Body) != "for members only" {
			t.Fatalf("member got %q", p.Body)
		}
	}
}

// TestRoomFanoutRingCloseRace: members close, from their side and from
// the comet's, and new ones connect, while pushes fan out to their rooms
// through the ring. Each room's frames carry its name and a sequence
// number: a member must get only its room's frames, in increasing order,
// and a new client nothing before its auth reply, however socket numbers
// are reused. Bounded in iterations and time; run with -race.
func TestRoomFanoutRingCloseRace(t *testing.T) {
	testRing(t)
	e := startComet(t, func(c *Config) { unlimited(c); c.Bucket.RoomWorkers = 2 })
	const rooms, per = 3, minRingFanout + 4
	roomName := func(r int) string { return "live://race-" + strconv.Itoa(r) }

	var (
		mu     sync.Mutex
		bad    []string
		wg     sync.WaitGroup
		keySeq int
	)
	type member struct {
		c    *client
		key  string
		room int
	}
	watch := func(m member) {
		wg.Go(func() {
			last := -1
			for {
				p, err := m.c.read()
				if err != nil {
					return
				}
				room, seq, ok := strings.Cut(string(p.Body), "#")
				n, _ := strconv.Atoi(seq)
				if !ok || p.Op != 1000 || room != roomName(m.room) || n <= last {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s in %s got op %d %q after #%d", m.key, roomName(m.room), p.Op, p.Body, last))
					mu.Unlock()
					return
				}
				last = n
			}
		})
	}
	join := func(room int) member {
		keySeq++
		m := member{key: fmt.Sprintf("race-%d", keySeq), room: room}
		m.c = roomMember(t, e, []string{"tcp", "ws"}[keySeq%2], m.key, roomName(room))
		watch(m)
		return m
	}
	var live []member
	for r := range rooms {
		for range per {
			live = append(live, join(r))
		}
	}

	stop := make(chan struct{})
	var pushers sync.WaitGroup
	pushers.Go(func() {
		for seq := 0; ; seq++ {
			for r := range rooms {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = e.srv.BroadcastRoom(ctx, roomName(r), &protocol.Proto{Ver: 1, Op: 1000, Body: []byte(roomName(r) + "#" + strconv.Itoa(seq))})
				cancel()
			}
			time.Sleep(time.Millisecond)
		}
	})

	deadline := time.Now().Add(4 * time.Second)
	iterations := 0
	for ; iterations < 300 && time.Now().Before(deadline); iterations++ {
		i := rand.IntN(len(live))
		m := live[i]
		switch iterations % 3 {
		case 0: // the client goes
			_ = m.c.conn.Close()
		case 1: // the comet closes it
			if ch := e.srv.bucket(m.key).get(m.key); ch != nil {
				ch.close(ReasonSlow)
			}
		case 2: // the comet closes it with a close frame (WebSocket)
			if ch := e.srv.bucket(m.key).get(m.key); ch != nil {
				ch.closeGoingAway(ReasonDrain)
			}
		}
		live[i] = join(m.room) // most likely on the socket number just freed
	}
	close(stop)
	pushers.Wait()
	for _, m := range live {
		_ = m.c.conn.Close()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d members got foreign or out-of-order frames, e.g. %s", len(bad), bad[0])
	}
	if testutil.ToFloat64(e.srv.metrics.roomSentRing) == 0 {
		t.Error("no ring send counted")
	}
	t.Logf("%d iterations, %v ring sends, %v write, %v queued", iterations,
		testutil.ToFloat64(e.srv.metrics.roomSentRing), testutil.ToFloat64(e.srv.metrics.roomSentWrite), testutil.ToFloat64(e.srv.metrics.roomSentQueued))
}

// TestRoomFanoutRingUnavailable: when no ring can be set up, the comet
// says so once and delivers room pushes with write(2).
func TestRoomFanoutRingUnavailable(t *testing.T) {
	orig := newFanoutRing
	t.Cleanup(func() { newFanoutRing = orig }) // after the comet has stopped
	newFanoutRing = func() (*ioURing, error) { return nil, unix.ENOSYS }
	var buf lockedBuffer
	e := startCometLog(t, func(c *Config) { unlimited(c); c.Bucket.RoomWorkers = 4 }, slog.New(slog.NewTextHandler(&buf, nil)))
	var rooms []string
	var all []*client
	for r := range 4 {
		rooms = append(rooms, "live://fallback-"+strconv.Itoa(r))
		all = append(all, joinRoom(t, e, rooms[r], minRingFanout)...)
	}
	pushAll(t, e, rooms, all, 10)
	if got := testutil.ToFloat64(e.srv.metrics.roomSentRing); got != 0 {
		t.Errorf("%v ring sends", got)
	}
	if got := strings.Count(buf.String(), "io_uring unavailable"); got != 1 {
		t.Errorf("%d lines say io_uring is unavailable, want 1:\n%s", got, buf.String())
	}
}

// TestRoomFanoutRingFails: a ring whose io_uring_enter fails (here: its
// descriptor is not a ring) withdraws the batch; its members get the
// frame through their write loops, the worker says so once and writes
// with write(2) from then on, and every push arrives in order.
func TestRoomFanoutRingFails(t *testing.T) {
	testRing(t)
	orig := newFanoutRing
	var mu sync.Mutex
	var ringFDs []int
	t.Cleanup(func() { // after the comet has stopped
		newFanoutRing = orig
		for _, fd := range ringFDs {
			_ = unix.Close(fd)
		}
	})
	newFanoutRing = func() (*ioURing, error) {
		r, err := orig()
		if err == nil {
			mu.Lock()
			ringFDs = append(ringFDs, r.fd)
			mu.Unlock()
			r.fd = -1
		}
		return r, err
	}
	var buf lockedBuffer
	e := startCometLog(t, func(c *Config) { unlimited(c); c.Bucket.RoomWorkers = 1 }, slog.New(slog.NewTextHandler(&buf, nil)))
	members := joinRoom(t, e, "live://fails", minRingFanout+2)
	pushAll(t, e, []string{"live://fails"}, members, 20)
	if got := strings.Count(buf.String(), "io_uring failed"); got != 1 {
		t.Errorf("%d lines say io_uring failed, want 1:\n%s", got, buf.String())
	}
	if got := testutil.ToFloat64(e.srv.metrics.roomSentRing); got > float64(len(members)) {
		t.Errorf("%v ring sends: the ring was used after its first batch failed", got)
	}
}
