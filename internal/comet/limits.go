package comet

import (
	"hash/maphash"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// limits admits connections and handshakes against the [limits] section
// and keeps what it admitted: the open connections (authenticated or not),
// the per-IP counts and auth budgets (ipCounter), and the connections still
// in their handshake, which Shutdown closes (the others it finds in the
// buckets). The per-connection frame rate is counted by each Channel
// itself.
type limits struct {
	cfg   LimitsConfig
	conns atomic.Int64 // open connections, authenticated or not
	ips   *ipCounter

	pendingMu sync.Mutex
	pending   map[*Channel]struct{} // connections still in their handshake; guarded by pendingMu
}

func newLimits(cfg LimitsConfig, shards int) *limits {
	return &limits{cfg: cfg, ips: newIPCounter(shards), pending: make(map[*Channel]struct{})}
}

// admit counts a new connection from ip unless that would pass max_conns
// or max_conns_per_ip; release uncounts an admitted one.
func (l *limits) admit(ip netip.Addr) bool {
	if n := l.conns.Add(1); l.cfg.MaxConns > 0 && n > int64(l.cfg.MaxConns) || !l.ips.add(ip, l.cfg.MaxConnsPerIP) {
		l.conns.Add(-1)
		return false
	}
	return true
}

// release uncounts a connection admit counted.
func (l *limits) release(ip netip.Addr) {
	l.ips.remove(ip, l.cfg.AuthRatePerIP, time.Now())
	l.conns.Add(-1)
}

// startAuth takes an auth attempt from ip's budget (auth_rate_per_ip,
// pending_auth_per_ip); when it returns true, call endAuth once logic has
// answered.
func (l *limits) startAuth(ip netip.Addr) bool {
	return l.ips.startAuth(ip, l.cfg.AuthRatePerIP, l.cfg.PendingAuthPerIP, time.Now())
}

// endAuth gives back the place startAuth took.
func (l *limits) endAuth(ip netip.Addr) { l.ips.endAuth(ip) }

// startHandshake notes c as in its handshake until endHandshake.
func (l *limits) startHandshake(c *Channel) {
	l.pendingMu.Lock()
	l.pending[c] = struct{}{}
	l.pendingMu.Unlock()
}

// endHandshake forgets c (startHandshake).
func (l *limits) endHandshake(c *Channel) {
	l.pendingMu.Lock()
	delete(l.pending, c)
	l.pendingMu.Unlock()
}

// closePending closes the connections still in their handshake.
func (l *limits) closePending(reason CloseReason) {
	l.pendingMu.Lock()
	for c := range l.pending {
		c.close(reason)
	}
	l.pendingMu.Unlock()
}

// sweepLoop drops stale per-IP entries every ipSweepEvery until done is
// closed.
func (l *limits) sweepLoop(done <-chan struct{}) {
	t := time.NewTicker(ipSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			l.ips.sweep(l.cfg.AuthRatePerIP, now)
		}
	}
}

// ipSweepEvery is how often entries of IPs without connections are looked
// at and dropped once their auth bucket is full again.
const ipSweepEvery = 5 * time.Second

// ipCounter keeps per client IP (IPv6: per /64, what one subscriber
// usually gets) the connections, the auth token bucket and the handshakes
// waiting for logic, sharded by IP. An entry outlives the IP's last
// connection until its token bucket is full again: closing every
// connection does not reset the IP's auth budget. Entries without
// connections are dropped by sweep (every ipSweepEvery) or when the last
// connection goes and the bucket is already full, so the entries of gone
// IPs number at most the IPs that authenticated within the last
// burst/rate seconds plus ipSweepEvery.
type ipCounter struct {
	seed   maphash.Seed
	shards []ipShard
	active atomic.Int64 // entries with connections
}

type ipShard struct {
	mu sync.Mutex
	m  map[netip.Addr]*ipEntry // guarded by mu
}

type ipEntry struct {
	conns   int32
	pending int32     // handshakes waiting for logic
	tokens  float64   // auth attempts available (token bucket); < 0: never used, full
	last    time.Time // when tokens was last refilled
}

func newIPCounter(n int) *ipCounter {
	c := &ipCounter{seed: maphash.MakeSeed(), shards: make([]ipShard, n)}
	for i := range c.shards {
		c.shards[i].m = make(map[netip.Addr]*ipEntry)
	}
	return c
}

// ipKey is what a client address is counted under: IPv4 addresses (also
// IPv4-mapped IPv6) alone, IPv6 addresses by their /64.
func ipKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// remoteIP returns the key c's remote address is counted under.
func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ipKey(a.AddrPort().Addr())
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ipKey(ap.Addr())
}

func (c *ipCounter) shard(ip netip.Addr) *ipShard {
	return &c.shards[maphash.Comparable(c.seed, ip)%uint64(len(c.shards))]
}

// full reports whether e's token bucket is full at now (rate per second,
// burst max(rate, 1)); a rate of 0 has no bucket.
func (e *ipEntry) full(rate float64, now time.Time) bool {
	return rate <= 0 || e.tokens < 0 || e.tokens+now.Sub(e.last).Seconds()*rate >= max(rate, 1)
}

// idle reports whether e may be dropped: no connection, no handshake and
// a full bucket.
func (e *ipEntry) idle(rate float64, now time.Time) bool {
	return e.conns <= 0 && e.pending <= 0 && e.full(rate, now)
}

// add counts one more connection from ip unless that would pass limit
// (0 = unlimited).
func (c *ipCounter) add(ip netip.Addr, limit int) bool {
	sh := c.shard(ip)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[ip]
	if e == nil {
		e = &ipEntry{tokens: -1}
		sh.m[ip] = e
	}
	if limit > 0 && int(e.conns) >= limit {
		return false // an entry without connections goes at the next sweep
	}
	if e.conns++; e.conns == 1 {
		c.active.Add(1)
	}
	return true
}

// remove uncounts a connection of ip; the entry goes at once when nothing
// else keeps it (rate is limits.auth_rate_per_ip).
func (c *ipCounter) remove(ip netip.Addr, rate float64, now time.Time) {
	sh := c.shard(ip)
	sh.mu.Lock()
	if e := sh.m[ip]; e != nil {
		if e.conns--; e.conns == 0 {
			c.active.Add(-1)
		}
		if e.idle(rate, now) {
			delete(sh.m, ip)
		}
	}
	sh.mu.Unlock()
}

// startAuth takes one auth attempt from ip's token bucket (rate per
// second, burst max(rate, 1); 0 = unlimited) and one of its places for
// handshakes waiting for logic (pendingLimit; 0 = unlimited). When it
// returns true the caller calls endAuth once logic has answered. The IP
// must have a connection counted by add.
func (c *ipCounter) startAuth(ip netip.Addr, rate float64, pendingLimit int, now time.Time) bool {
	sh := c.shard(ip)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[ip]
	if e == nil {
		return true // not counted by add: nothing to limit against
	}
	if pendingLimit > 0 && int(e.pending) >= pendingLimit {
		return false
	}
	if rate > 0 {
		burst := max(rate, 1)
		if e.tokens < 0 {
			e.tokens = burst
		} else {
			e.tokens = min(burst, e.tokens+now.Sub(e.last).Seconds()*rate)
		}
		e.last = now
		if e.tokens < 1 {
			return false
		}
		e.tokens--
	}
	e.pending++
	return true
}

// endAuth gives back the place startAuth took.
func (c *ipCounter) endAuth(ip netip.Addr) {
	sh := c.shard(ip)
	sh.mu.Lock()
	if e := sh.m[ip]; e != nil && e.pending > 0 {
		e.pending--
	}
	sh.mu.Unlock()
}

// sweep drops the entries nothing keeps any longer (see idle).
func (c *ipCounter) sweep(rate float64, now time.Time) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for ip, e := range sh.m {
			if e.idle(rate, now) {
				delete(sh.m, ip)
			}
		}
		sh.mu.Unlock()
	}
}

// distinct returns the IPs (IPv6: /64s) with connections.
func (c *ipCounter) distinct() int { return int(c.active.Load()) }

// entries returns the entries kept, with connections or not.
func (c *ipCounter) entries() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
