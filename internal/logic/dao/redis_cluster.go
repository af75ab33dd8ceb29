package dao

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"
)

// Redis Cluster mode ([redis] cluster = true).
//
// The client is github.com/mna/redisc on top of redigo (the same pools,
// dial options, TLS and AUTH as the single Redis): it reads the slot map
// with CLUSTER SLOTS, keeps one pool per master and follows MOVED and ASK
// replies. It depends on redigo alone, its last release (v1.4.0, 2023) is
// a small, complete implementation of the cluster protocol that has needed
// no change since; a client on another driver (go-redis, rueidis) would
// replace redigo in this package.
//
// A Lua script or MULTI may only touch keys of one hash slot, so in
// cluster mode the keys carry hash tags (the part between the first { and
// the next }), and the operations that touched keys of several slots in
// one script are split into single-slot steps:
//
//	key_{:<key>}     string  comet server id; TTL session_ttl
//	conn_{:<key>}    string  connection id; TTL session_ttl. Same slot as
//	                         key_ (tag ":<key>"), so the ownership scripts
//	                         stay atomic. The ":" keeps the tag non-empty
//	                         for a connection key that starts with "}".
//	mid_{<mid>}      hash    field = connection key, value = server id;
//	                         TTL session_ttl (mid > 0 only)
//	{online}ol_<server>, {online}online_servers, {online}epoch
//	                 as in single mode, all in the slot of tag "online":
//	                 a comet's report, the index and the epoch are written
//	                 by one pipeline and read by one script.
//	umeta_{<mid>}, ustream_{<mid>}     a user's stream, in mid_'s slot
//	kmeta_{:<key>}, kstream_{:<key>}   a key's stream, in key_'s slot
//	rmeta_{r:<room>}, rstream_{r:<room>}  a room's stream (stream.go)
//
// Every key still starts with [redis] prefix, which must not contain a
// brace (its tag would win). These shapes are not goim v2's: a v2 logic
// cannot share a cluster with this one (v2 never supported Redis Cluster).
//
// Operations (round trips; the commands of one round trip go to every
// master concerned at once, one pipeline per master):
//
//	add session      1: SET conn_, SET key_ (the key's slot), HSET and
//	                 PEXPIRE mid_ (the member's slot)
//	renew session    2: the renew script on key_/conn_; then, unless not
//	                 owned, HSET (when the key is this server's) and
//	                 PEXPIRE mid_. Writing the mid_ field at every renewal
//	                 repairs a field that a delete of the connection it
//	                 replaced removed between its two steps (see below)
//	delete session   2: the delete script on key_/conn_; then, unless not
//	                 owned by connection id, HDEL mid_'s field when it
//	                 names this server (a one-key script)
//	servers by keys  1: GET key_ per key (MGET cannot span slots)
//	keys by mids     1: HGETALL mid_ per mid
//	store report     1: the single-mode pipeline, in the online slot
//	load reports     2: trim and read the index (ZREMRANGEBYSCORE,
//	                 ZRANGE); then a script that MGETs the ol_ keys it is
//	                 given in KEYS and drops the index members whose report
//	                 is gone
//	health           PING on every master
//
// Between the two steps of a delete another connection may take the same
// key on the same comet for the same member: the delete's second step then
// removes the field the new connection has just written. Its routing by
// key is intact, and its next renewal writes the field again (in single
// mode one script does both steps and this cannot happen).
//
// The epoch lives on the master of the online slot: a cluster that loses
// that master's data gives comets a new epoch (every session is renewed at
// once); a master that loses only session slots is repaired by the
// renewals, which re-add a missing key_ (Readded), within comet's
// protocol.session_renew.
const (
	clusterKeyTagOpen = "{:"
	clusterOnlineTag  = "{online}"
)

// Redirections and TRYAGAIN replies (a slot being migrated) are followed
// command by command, each at most clusterRetryAttempts times, waiting
// clusterTryAgainDelay after a TRYAGAIN.
const (
	clusterRetryAttempts = 5
	clusterTryAgainDelay = 20 * time.Millisecond
)

// cluster is the Redis Cluster client of a Redis in cluster mode.
type cluster struct {
	r  *Redis
	rc *redisc.Cluster

	// masters holds the master address of each slot, from the last slot
	// map read (redisc's LayoutRefresh): commands are grouped by it into
	// one pipeline per master.
	masters atomic.Pointer[[redisc.HashSlots]string]

	refreshMu sync.Mutex // serializes slot map reads; guards tried, lastErr
	tried     time.Time  // when the slot map was last read (or tried)
	lastErr   error      // that read's error
}

func newCluster(r *Redis, cfg RedisConfig, seeds []string, opts []redis.DialOption) *cluster {
	c := &cluster{r: r}
	c.rc = &redisc.Cluster{
		StartupNodes: seeds,
		DialOptions:  opts,
		CreatePool: func(addr string, opts ...redis.DialOption) (*redis.Pool, error) {
			return r.newPool(cfg, addr, opts), nil
		},
		// redisc takes no context: a full pool is waited for at most as
		// long as one operation may take.
		PoolWaitTime:  cfg.ReadTimeout.D(),
		LayoutRefresh: c.layout,
		BgError: func(src redisc.BgErrorSrc, err error) {
			r.log.Warn("dao: redis cluster: background error", "source", int(src), "error", err)
		},
	}
	return c
}

// layout records a new slot map.
func (c *cluster) layout(_, slots [redisc.HashSlots][]string) {
	m := new([redisc.HashSlots]string)
	for i, nodes := range slots {
		if len(nodes) > 0 {
			m[i] = nodes[0]
		}
	}
	c.masters.Store(m)
}

// slotMap returns the slot map, reading it first if it never was.
func (c *cluster) slotMap() (*[redisc.HashSlots]string, error) {
	if m := c.masters.Load(); m != nil {
		return m, nil
	}
	if err := c.refresh(time.Now()); err != nil {
		return nil, fmt.Errorf("read the slot map: %w", err)
	}
	if m := c.masters.Load(); m != nil {
		return m, nil
	}
	return nil, errors.New("no slot map")
}

// refresh reads the slot map again, unless it was read (or tried) since
// since: concurrent operations that saw the same redirection, or that all
// found no map while the cluster is down, share one read.
func (c *cluster) refresh(since time.Time) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	if c.tried.After(since) {
		return c.lastErr
	}
	c.lastErr = c.rc.Refresh()
	c.tried = time.Now()
	return c.lastErr
}

func (c *cluster) close() error { return c.rc.Close() }

// exec runs cmds: grouped by the master of their key's slot, one pipeline
// per master (in cmds' order), the masters in parallel. A command answered
// with a redirection (MOVED, ASK) or TRYAGAIN is then sent again alone,
// following redirections, after the slot map is read again when one was a
// MOVED. The error is the first transport or pool failure of a group.
func (c *cluster) exec(timeout time.Duration, cmds []command) error {
	start := time.Now()
	m, err := c.slotMap()
	if err != nil {
		return err
	}
	type group struct {
		addr string
		idx  []int
	}
	groups := make([]group, 0, 4)
outer:
	for i := range cmds {
		addr := m[redisc.Slot(cmds[i].key)]
		for g := range groups {
			if groups[g].addr == addr {
				groups[g].idx = append(groups[g].idx, i)
				continue outer
			}
		}
		groups = append(groups, group{addr: addr, idx: []int{i}})
	}
	// The first master's pipeline runs on this goroutine, the others'
	// alongside.
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for g := 1; g < len(groups); g++ {
		wg.Go(func() { errs[g] = c.run(timeout, cmds, groups[g].idx) })
	}
	errs[0] = c.run(timeout, cmds, groups[0].idx)
	wg.Wait()
	err = errors.Join(errs...)
	if err != nil {
		return err
	}
	moved, again := false, false
	for i := range cmds {
		if re := redisc.ParseRedir(cmds[i].err); re != nil {
			again = true
			moved = moved || re.Type == "MOVED"
		} else if redisc.IsTryAgain(cmds[i].err) {
			again = true
		}
	}
	if !again {
		return nil
	}
	if moved {
		// A failed read leaves the old map: the retries follow the
		// redirections anyway.
		_ = c.refresh(start)
	}
	for i := range cmds {
		if redisc.ParseRedir(cmds[i].err) != nil || redisc.IsTryAgain(cmds[i].err) {
			if err := c.retry(&cmds[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// run sends the commands idx of cmds (of one slot's master) as one
// pipeline. As in single mode, a connection the server had closed (the
// node restarted) marks older idle connections stale and the pipeline is
// sent once more on a fresh one.
func (c *cluster) run(timeout time.Duration, cmds []command, idx []int) error {
	err := c.runOnce(timeout, cmds, idx)
	if err != nil && peerClosed(err) {
		c.r.staleBefore.Store(time.Now().UnixNano())
		err = c.runOnce(timeout, cmds, idx)
	}
	return err
}

func (c *cluster) runOnce(timeout time.Duration, cmds []command, idx []int) (err error) {
	conn := c.rc.Get()
	defer func() {
		if cerr := conn.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	// Bound to the master of the first command's slot (by redisc's own
	// map, which a MOVED may have updated before ours).
	if err := redisc.BindConn(conn, cmds[idx[0]].key); err != nil {
		return err
	}
	for _, i := range idx {
		if err := conn.Send(cmds[i].name, cmds[i].args...); err != nil {
			return err
		}
	}
	replies, err := flush(conn, timeout, len(idx))
	if err != nil {
		return err
	}
	for j, i := range idx {
		if err := cmds[i].set(conn, timeout, replies[j]); err != nil {
			return err
		}
	}
	return nil
}

// retry sends cmd alone through redisc's RetryConn, which follows MOVED
// and ASK replies and waits out TRYAGAIN. Its reads are bounded by the
// dial's read timeout.
func (c *cluster) retry(cmd *command) error {
	conn := c.rc.Get()
	defer conn.Close()
	if err := redisc.BindConn(conn, cmd.key); err != nil {
		return err
	}
	rc, err := redisc.RetryConn(conn, clusterRetryAttempts, clusterTryAgainDelay)
	if err != nil {
		return err
	}
	reply, err := rc.Do(cmd.name, cmd.args...)
	if isNoScript(err) && cmd.script != nil {
		reply, err = rc.Do("EVAL", cmd.script.withSource(cmd.args)...)
	}
	var re redis.Error
	if err != nil && !errors.As(err, &re) {
		return err
	}
	cmd.reply, cmd.err = reply, err
	return nil
}

// clusterPing sends PING to every master of the slot map.
func (r *Redis) clusterPing(ctx context.Context) error {
	timeout, err := r.opTimeout(ctx)
	if err != nil {
		return err
	}
	if _, err := r.cluster.slotMap(); err != nil {
		return err
	}
	return r.cluster.rc.EachNode(false, func(addr string, conn redis.Conn) error {
		pong, err := redis.String(redis.DoWithTimeout(conn, timeout, "PING"))
		if err == nil && pong != "PONG" {
			err = fmt.Errorf("unexpected reply %q", pong)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", addr, err)
		}
		return nil
	})
}

// clusterRenewLua is renewSessionLua without the mid_ hash (another
// slot): the same answers, and 2 for "renewed, but key_ holds another
// server" (the caller then only extends mid_'s TTL, as single mode does).
//
//	KEYS[1] key_, KEYS[2] conn_
//	ARGV[1] server, ARGV[2] TTL in ms, ARGV[3] connection id ("0": none)
const clusterRenewLua = `
local cur = redis.call('GET', KEYS[2])
if ARGV[3] ~= '0' and cur and cur ~= ARGV[3] then
  return -1
end
if redis.call('PEXPIRE', KEYS[1], ARGV[2]) == 0 then
  if ARGV[3] ~= '0' then
    redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
  elseif cur then
    redis.call('DEL', KEYS[2])
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
end
local mine = redis.call('GET', KEYS[1]) == ARGV[1]
if cur then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
elseif ARGV[3] ~= '0' and mine then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
end
if mine then
  return 1
end
return 2
`

// clusterRenewOther is clusterRenewLua's answer for a key_ of another
// server.
const clusterRenewOther = 2

// clusterRenewSession is RenewSession in cluster mode.
func (r *Redis) clusterRenewSession(ctx context.Context, s Session) (Renewal, error) {
	kk, ck := r.keyKey(s.Key), r.connKey(s.Key)
	cmds := []command{r.clusterRenew.command(kk, []string{kk, ck}, s.Server, r.sessionTTL, connIDArg(s.ConnID))}
	if err := r.exec(ctx, cmds); err != nil {
		return 0, err
	}
	n, err := redis.Int(cmds[0].reply, cmds[0].err)
	if err != nil {
		return 0, err
	}
	if n < int(NotOwned) || n > clusterRenewOther {
		return 0, fmt.Errorf("renew script answered %d", n)
	}
	if n == int(NotOwned) {
		return NotOwned, nil
	}
	if s.Mid > 0 {
		mk := r.midKey(s.Mid)
		cmds = cmds[:0]
		if n != clusterRenewOther {
			cmds = append(cmds, command{key: mk, name: "HSET", args: []any{mk, s.Key, s.Server}})
		}
		cmds = append(cmds, command{key: mk, name: "PEXPIRE", args: []any{mk, r.sessionTTL}})
		if err := r.exec(ctx, cmds); err != nil {
			return 0, err
		}
		if err := firstError(cmds); err != nil {
			return 0, err
		}
	}
	if n == int(Readded) {
		return Readded, nil
	}
	return Renewed, nil
}

// clusterDelLua is delSessionLua without the mid_ hash (another slot).
//
//	KEYS[1] key_, KEYS[2] conn_
//	ARGV[1] server, ARGV[2] connection id ("0": none)
//
// Returns -1 if conn_ holds another connection's id (nothing deleted, and
// the mid_ field is to be left too), 1 if key_ was this server's (deleted
// with conn_), else 0.
const clusterDelLua = `
if ARGV[2] ~= '0' then
  local cur = redis.call('GET', KEYS[2])
  if cur and cur ~= ARGV[2] then
    return -1
  end
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
`

// delMidFieldLua deletes field ARGV[1] of hash KEYS[1] (mid_) if its
// value is ARGV[2] (the server). Returns 1 if it did.
const delMidFieldLua = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`

// clusterDelSessions is DelSessions' Redis part in cluster mode for the
// sessions valid of sessions; it fills owned.
func (r *Redis) clusterDelSessions(ctx context.Context, sessions []Session, valid []int, owned []bool) error {
	cmds := make([]command, len(valid))
	for j, i := range valid {
		kk := r.keyKey(sessions[i].Key)
		cmds[j] = r.clusterDel.command(kk, []string{kk, r.connKey(sessions[i].Key)}, sessions[i].Server, connIDArg(sessions[i].ConnID))
	}
	if err := r.exec(ctx, cmds); err != nil {
		return err
	}
	mids := make([]command, 0, len(valid))
	for j, i := range valid {
		n, err := redis.Int(cmds[j].reply, cmds[j].err)
		if err != nil {
			return err
		}
		owned[i] = n == 1
		if ss := sessions[i]; n >= 0 && ss.Mid > 0 {
			mk := r.midKey(ss.Mid)
			mids = append(mids, r.delMidField.command(mk, []string{mk}, ss.Key, ss.Server))
		}
	}
	if len(mids) == 0 {
		return nil
	}
	if err := r.exec(ctx, mids); err != nil {
		return err
	}
	return firstError(mids)
}

// clusterServersByKeys reads key_ of each of keys (one GET each: MGET
// cannot span slots) into servers.
func (r *Redis) clusterServersByKeys(ctx context.Context, keys []string) ([]string, error) {
	cmds := make([]command, len(keys))
	for i, k := range keys {
		kk := r.keyKey(k)
		cmds[i] = command{key: kk, name: "GET", args: []any{kk}}
	}
	if err := r.exec(ctx, cmds); err != nil {
		return nil, err
	}
	servers := make([]string, len(keys))
	for i := range cmds {
		s, err := redis.String(cmds[i].reply, cmds[i].err)
		if err != nil && !errors.Is(err, redis.ErrNil) {
			return nil, err
		}
		servers[i] = s
	}
	return servers, nil
}

// clusterLoadOnlineLua is loadAllOnlineLua's second half, on keys it is
// given: it MGETs the report keys KEYS[2..n] (of the servers ARGV[1..n-1]),
// removes from the index KEYS[1] the servers whose report is gone and
// returns {server1, report1, ...} for the others.
const clusterLoadOnlineLua = `
local out, gone = {}, {}
local chunk = 500
for i = 2, #KEYS, chunk do
  local last = math.min(i + chunk - 1, #KEYS)
  local values = redis.call('MGET', unpack(KEYS, i, last))
  for j = i, last do
    local v = values[j - i + 1]
    if v then
      out[#out + 1] = ARGV[j - 1]
      out[#out + 1] = v
    else
      gone[#gone + 1] = ARGV[j - 1]
    end
  end
end
for i = 1, #gone, chunk do
  redis.call('ZREM', KEYS[1], unpack(gone, i, math.min(i + chunk - 1, #gone)))
end
return out
`

// clusterLoadAllOnline is LoadAllOnline's Redis part in cluster mode: the
// index is trimmed and read, then the reports it names are read by a
// script that is given their keys.
func (r *Redis) clusterLoadAllOnline(ctx context.Context, oldest string) ([][]byte, error) {
	index := r.onlineServersKey()
	cmds := []command{
		{key: index, name: "ZREMRANGEBYSCORE", args: []any{index, "-inf", "(" + oldest}},
		{key: index, name: "ZRANGE", args: []any{index, 0, -1}},
	}
	if err := r.exec(ctx, cmds); err != nil {
		return nil, err
	}
	if err := firstError(cmds); err != nil {
		return nil, err
	}
	servers, err := redis.Strings(cmds[1].reply, nil)
	if err != nil || len(servers) == 0 {
		return nil, err
	}
	keys := make([]string, 1, 1+len(servers))
	keys[0] = index
	args := make([]any, len(servers))
	for i, s := range servers {
		keys = append(keys, r.onlineKey(s))
		args[i] = s
	}
	cmds = []command{r.clusterOnline.command(index, keys, args...)}
	if err := r.exec(ctx, cmds); err != nil {
		return nil, err
	}
	return redis.ByteSlices(cmds[0].reply, cmds[0].err)
}

// firstError is the first error reply among cmds.
func firstError(cmds []command) error {
	for i := range cmds {
		if cmds[i].err != nil {
			return cmds[i].err
		}
	}
	return nil
}

func isNoScript(err error) bool {
	var e redis.Error
	return errors.As(err, &e) && strings.HasPrefix(string(e), "NOSCRIPT")
}
