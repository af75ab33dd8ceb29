package dao

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/gather"
	"github.com/goim/goim/internal/logging"
	"github.com/goim/goim/internal/secret"
	"github.com/goim/goim/internal/tlsclient"
)

// Redis schema. Every key starts with RedisConfig.Prefix; behind it the
// shapes are goim v2's, so a v2 comet/logic pair and this logic agree on
// the session routing:
//
//	mid_<mid>    hash    field = connection key, value = comet server id;
//	                     TTL session_ttl, renewed as a whole (mid > 0 only)
//	key_<key>    string  comet server id; TTL session_ttl
//	conn_<key>   string  the connection id (decimal) of the connection
//	                     that holds key, when its comet sent one; TTL
//	                     session_ttl, written and renewed with key_<key>
//	ol_<server>     string  that comet's whole online report as JSON (see
//	                        onlineRecord); TTL online_ttl
//	online_servers  zset    member = comet server id, score = Unix ms of
//	                        its last report (logic's clock): the index
//	                        LoadAllOnline reads. TTL onlineIndexTTLFactor x
//	                        online_ttl, renewed by every report
//
// online_servers has no ol_ prefix, so no server id can make an ol_<server>
// key collide with it. The reliable delivery streams (umeta_, ustream_,
// kmeta_, kstream_, rmeta_, rstream_) are described atop stream.go.
//
// conn_<key> is what makes session routing survive key re-use: when a
// second connection takes a key on the same comet (evicting the first),
// the first one's late Disconnect or Heartbeat carries its own connection
// id, finds the second one's in conn_<key> and changes nothing. A session
// written without a connection id (a goim v2 comet, or one that sends
// none) deletes conn_<key>, and its operations compare the server only.
// goim v2 readers ignore conn_ keys; key_ and mid_ keep v2's shapes.
//
// Every operation is one round trip: a single command, a pipeline or one
// Lua script. Nothing else is written: the health check is PING (goim v2
// wrote SET PING PONG, a write on every check).
//
// In cluster mode ([redis] cluster = true) the shapes differ: see the
// schema comment atop redis_cluster.go.
const (
	midPrefix         = "mid_"
	keyPrefix         = "key_"
	connPrefix        = "conn_"
	onlinePrefix      = "ol_"
	onlineServersName = "online_servers"
	epochName         = "epoch"
)

// EnvRedisPassword is the environment variable holding the Redis
// password; when set and not empty it wins over [redis] password_file and
// password.
const EnvRedisPassword = "GOIM_REDIS_PASSWORD"

// RedisConfig is the [redis] section of logic's configuration.
type RedisConfig struct {
	// Addr is the Redis server, "host:port". In cluster mode it is the
	// seed node when cluster_addrs is empty. Default "127.0.0.1:6379".
	Addr string `toml:"addr"`
	// Cluster selects Redis Cluster: the session routing is spread over
	// the cluster's masters, under the key shapes of cluster mode (hash
	// tags; see docs/architecture.md), which a goim v2 logic does not
	// read. It needs db = 0 and a prefix without braces. Default false.
	Cluster bool `toml:"cluster"`
	// ClusterAddrs are seed nodes of the cluster, "host:port": the client
	// asks them for the slot map (CLUSTER SLOTS) and then talks to every
	// master it names. Empty means [addr]. Only read in cluster mode.
	// Default [].
	ClusterAddrs []string `toml:"cluster_addrs"`
	// Username is the ACL user (Redis 6 and later) sent with AUTH along
	// with the password; "" authenticates as the default user (or with
	// requirepass). It needs a password. Default "".
	Username string `toml:"username"`
	// Password is sent with AUTH when not empty. It is the last choice:
	// the environment variable GOIM_REDIS_PASSWORD, when set, wins over
	// password_file, which wins over password; prefer either to a
	// password written in the file (conf.ApplyEnv leaves the key to that
	// rule). Default "".
	Password string `toml:"password" env:"GOIM_REDIS_PASSWORD"`
	// PasswordFile is a file holding the password (trailing newline
	// ignored), read at start and by -check-config. Default "".
	PasswordFile string `toml:"password_file"`
	// DB is the database index selected on every connection; 0 in
	// cluster mode. Default 0.
	DB int `toml:"db"`
	// Prefix is prepended to every key, so several clusters (or tests)
	// can share one Redis; no braces in cluster mode. Default "" (goim
	// v2's key names).
	Prefix string `toml:"prefix"`
	// DialTimeout bounds connecting (and AUTH/SELECT). Default "1s".
	DialTimeout conf.Duration `toml:"dial_timeout"`
	// ReadTimeout bounds waiting for the replies of one operation.
	// Default "1s".
	ReadTimeout conf.Duration `toml:"read_timeout"`
	// WriteTimeout bounds writing one operation's commands. Default "1s".
	WriteTimeout conf.Duration `toml:"write_timeout"`
	// MaxIdle is the number of idle connections the pool keeps (per
	// node in cluster mode). Default 32.
	MaxIdle int `toml:"max_idle"`
	// MaxActive caps the open connections (per node in cluster mode); an
	// operation beyond it waits for a free one (until its context ends;
	// in cluster mode at most read_timeout). 0 means unlimited.
	// Default 256.
	MaxActive int `toml:"max_active"`
	// IdleTimeout closes connections idle for longer; "0s" keeps them.
	// Keep it below the server's own timeout setting. Default "4m".
	IdleTimeout conf.Duration `toml:"idle_timeout"`
	// SessionTTL is the lifetime of the mid_ and key_ routing keys,
	// renewed by the heartbeats the comet forwards (at most every comet's
	// protocol.session_renew, ±10 %). Keep it above 1.1 x session_renew +
	// node.heartbeat x node.heartbeat_max (19m with the defaults) or live
	// connections lose their routing between renewals. Millisecond
	// precision. Default "30m".
	SessionTTL conf.Duration `toml:"session_ttl"`
	// OnlineTTL is the lifetime of a comet's online report (ol_<server>):
	// a comet that stops reporting drops out of the online counts after
	// it. Keep it a few times comet's logic.report_interval. Millisecond
	// precision. Default "30s".
	OnlineTTL conf.Duration `toml:"online_ttl"`
	// The keys tls, tls_ca_file, tls_cert_file, tls_key_file and
	// tls_server_name: Redis over TLS (managed Redis services), the
	// server's certificate always verified. Default: no TLS.
	tlsclient.Config
}

// DefaultRedisConfig returns the defaults of RedisConfig.
func DefaultRedisConfig() RedisConfig {
	return RedisConfig{
		Addr:         "127.0.0.1:6379",
		DialTimeout:  conf.Duration(time.Second),
		ReadTimeout:  conf.Duration(time.Second),
		WriteTimeout: conf.Duration(time.Second),
		MaxIdle:      32,
		MaxActive:    256,
		IdleTimeout:  conf.Duration(4 * time.Minute),
		SessionTTL:   conf.Duration(30 * time.Minute),
		OnlineTTL:    conf.Duration(30 * time.Second),
	}
}

// Validate records every problem of c in p, with key paths relative to p.
func (c RedisConfig) Validate(p *conf.Problems) {
	p.HostPort("addr", c.Addr)
	p.Check(c.DB >= 0, "db", "must be >= 0, got %d", c.DB)
	if c.Cluster {
		p.Check(c.DB == 0, "db", "must be 0 in cluster mode (Redis Cluster has database 0 only), got %d", c.DB)
		p.Check(!strings.ContainsAny(c.Prefix, "{}"), "prefix",
			"must not contain { or } in cluster mode (a hash tag in the prefix would put every key in one slot), got %q", c.Prefix)
		p.HostPorts("cluster_addrs", c.ClusterAddrs)
	}
	p.Check(c.DialTimeout > 0, "dial_timeout", "must be > 0, got %v", c.DialTimeout)
	p.Check(c.ReadTimeout > 0, "read_timeout", "must be > 0, got %v", c.ReadTimeout)
	p.Check(c.WriteTimeout > 0, "write_timeout", "must be > 0, got %v", c.WriteTimeout)
	p.Check(c.MaxIdle >= 0, "max_idle", "must be >= 0, got %d", c.MaxIdle)
	if p.Check(c.MaxActive >= 0, "max_active", "must be >= 0 (0 = unlimited), got %d", c.MaxActive) && c.MaxActive > 0 {
		p.Check(c.MaxIdle <= c.MaxActive, "max_idle", "must be <= max_active (%d), got %d", c.MaxActive, c.MaxIdle)
	}
	p.Check(c.IdleTimeout >= 0, "idle_timeout", "must be >= 0 (0 = never), got %v", c.IdleTimeout)
	p.Check(c.SessionTTL.D() >= time.Millisecond, "session_ttl", "must be >= 1ms, got %v", c.SessionTTL)
	p.Check(c.OnlineTTL.D() >= time.Millisecond, "online_ttl", "must be >= 1ms, got %v", c.OnlineTTL)
	password, _, err := c.password()
	if err != nil {
		p.Add("password_file", "%v", err)
	} else {
		p.Check(c.Username == "" || password != "", "username", "needs a password (%s, password_file or password)", EnvRedisPassword)
	}
	c.Config.Validate(p)
}

// password resolves the Redis password: GOIM_REDIS_PASSWORD, else
// password_file, else password.
func (c RedisConfig) password() (string, secret.Source, error) {
	return secret.Resolve(EnvRedisPassword, c.PasswordFile, c.Password)
}

// Redis is logic's Redis client: session routing and online counts. It is
// safe for concurrent use. Each operation takes a pooled connection, is
// bounded by ReadTimeout (or the context's deadline, if sooner) and, when
// Redis is down, fails with ErrRedis instead of waiting for it.
type Redis struct {
	pool        *redis.Pool // single Redis; nil in cluster mode
	cluster     *cluster    // Redis Cluster; nil in single mode
	log         *slog.Logger
	prefix      string
	readTimeout time.Duration
	sessionTTL  int64 // ms
	onlineTTL   int64 // ms
	renewLua    luaScript
	delLua      luaScript
	onlineLua   luaScript

	// The scripts of cluster mode (redis_cluster.go).
	clusterRenew, clusterDel, delMidField, clusterOnline luaScript

	// staleBefore (Unix ns) is set when a connection turns out to have been
	// closed by the server (Redis restarted): idle connections returned to
	// the pool before it are dropped on borrow instead of failing one
	// operation each.
	staleBefore atomic.Int64
	closed      atomic.Bool

	// adds coalesces concurrent AddSession calls (coalesce.go); its
	// workers start with the first call (addsStart) and stop at Close.
	adds      *gather.Gatherer[*addReq]
	addsStart sync.Once
}

// NewRedis validates cfg and returns a client. It starts nothing and does
// not connect: connections are dialled by the first operations (use Ping
// to check Redis is reachable). A nil logger discards.
func NewRedis(cfg RedisConfig, logger *slog.Logger) (*Redis, error) {
	var p conf.Problems
	cfg.Validate(&p)
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("dao: redis config: %w", err)
	}
	logger = logging.OrDiscard(logger)
	r := &Redis{
		log:         logger,
		prefix:      cfg.Prefix,
		readTimeout: cfg.ReadTimeout.D(),
		sessionTTL:  cfg.SessionTTL.D().Milliseconds(),
		onlineTTL:   cfg.OnlineTTL.D().Milliseconds(),
		renewLua:    newLuaScript(renewSessionLua),
		delLua:      newLuaScript(delSessionLua),
		onlineLua:   newLuaScript(loadAllOnlineLua),

		clusterRenew:  newLuaScript(clusterRenewLua),
		clusterDel:    newLuaScript(clusterDelLua),
		delMidField:   newLuaScript(delMidFieldLua),
		clusterOnline: newLuaScript(clusterLoadOnlineLua),
	}
	r.adds = gather.New(addQueue, addMaxBatch, r.writeAdds)
	opts := []redis.DialOption{
		redis.DialConnectTimeout(cfg.DialTimeout.D()),
		redis.DialReadTimeout(cfg.ReadTimeout.D()),
		redis.DialWriteTimeout(cfg.WriteTimeout.D()),
		redis.DialDatabase(cfg.DB),
	}
	password, source, err := cfg.password()
	if err != nil {
		return nil, fmt.Errorf("dao: redis config: %w", err)
	}
	if password != "" {
		opts = append(opts, redis.DialPassword(password), redis.DialUsername(cfg.Username))
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		return nil, fmt.Errorf("dao: redis config: %w", err)
	}
	if tc != nil {
		opts = append(opts, redis.DialUseTLS(true), redis.DialTLSConfig(tc),
			redis.DialTLSHandshakeTimeout(cfg.DialTimeout.D()))
	}
	if cfg.Cluster {
		seeds := cfg.ClusterAddrs
		if len(seeds) == 0 {
			seeds = []string{cfg.Addr}
		}
		logger.Info("dao: redis cluster", "seeds", seeds, "tls", tc != nil, "user", cfg.Username, "password_from", string(source))
		r.cluster = newCluster(r, cfg, seeds, opts)
		return r, nil
	}
	logger.Info("dao: redis", "addr", cfg.Addr, "tls", tc != nil, "user", cfg.Username, "password_from", string(source))
	r.pool = r.newPool(cfg, cfg.Addr, opts)
	return r, nil
}

// newPool returns a connection pool to the Redis server at addr: the one
// Redis, or one node of a cluster.
func (r *Redis) newPool(cfg RedisConfig, addr string, opts []redis.DialOption) *redis.Pool {
	return &redis.Pool{
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialContext(ctx, "tcp", addr, opts...)
		},
		TestOnBorrow: r.testOnBorrow,
		MaxIdle:      cfg.MaxIdle,
		MaxActive:    cfg.MaxActive,
		IdleTimeout:  cfg.IdleTimeout.D(),
		Wait:         true,
	}
}

// Close closes the pool. Operations after Close fail with ErrRedis and
// ErrClosed. It is idempotent.
func (r *Redis) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.closeAdds()
	if r.cluster != nil {
		return r.cluster.close()
	}
	return r.pool.Close()
}

// Ping checks that Redis answers, with PING; in cluster mode every master
// must answer.
func (r *Redis) Ping(ctx context.Context) error {
	if r.cluster != nil {
		if err := r.clusterPing(ctx); err != nil {
			return &opError{kind: ErrRedis, op: "ping", err: err}
		}
		return nil
	}
	err := r.do(ctx, func(c redis.Conn, timeout time.Duration) error {
		pong, err := redis.String(redis.DoWithTimeout(c, timeout, "PING"))
		if err == nil && pong != "PONG" {
			err = errors.New("unexpected reply " + strconv.Quote(pong))
		}
		return err
	})
	if err != nil {
		return &opError{kind: ErrRedis, op: "ping", err: err}
	}
	return nil
}

// AddSession stores the routing of connection s.Key (of member s.Mid, on
// comet s.Server, connection id s.ConnID): key_<key> = server, conn_<key>
// = conn id (deleted when ConnID is 0) and, when mid > 0, field key of
// mid_<mid> = server; every key gets the session TTL. It is goim v2's
// AddMapping plus the connection id. The commands of concurrent calls
// share one pipeline (coalesce.go).
func (r *Redis) AddSession(ctx context.Context, s Session) error {
	if invalidSession(s) {
		return sessionArgError("add session", s.Mid, s.Key, s.Server)
	}
	return addError(s, r.coalesceAdd(ctx, s))
}

// Session is one connection's routing.
type Session struct {
	Mid         int64
	Key, Server string
	// ConnID is the comet's id of the connection (unique on that comet
	// for its lifetime); 0 means none was sent (a goim v2 comet): the
	// session is then told apart by its server only.
	ConnID uint64
}

// AddSessions stores several sessions as AddSession does each, together
// in one pipeline (in cluster mode one per master, in parallel): they are
// already a batch (a comet's ConnectBatch), so they are not coalesced with
// other calls. errs[i] is the result of sessions[i]: nil when it was
// stored.
func (r *Redis) AddSessions(ctx context.Context, sessions []Session) (errs []error) {
	errs = make([]error, len(sessions))
	// valid are the sessions with a key and a server; when some are not,
	// index[j] is the position of valid[j] in sessions.
	valid, index := sessions, []int(nil)
	if slices.ContainsFunc(sessions, invalidSession) {
		valid, index = nil, []int{}
		for i, ss := range sessions {
			if invalidSession(ss) {
				errs[i] = sessionArgError("add session", ss.Mid, ss.Key, ss.Server)
				continue
			}
			valid, index = append(valid, ss), append(index, i)
		}
	}
	if len(valid) == 0 {
		return errs
	}
	results, err := r.writeSessions(ctx, valid)
	if err != nil && ctx.Err() != nil {
		// The caller's context ended (its deadline cut the write short):
		// its error, as if it had waited for the write and given up.
		err = ctx.Err()
	}
	for j, ss := range valid {
		i := j
		if index != nil {
			i = index[j]
		}
		if err != nil {
			errs[i] = addError(ss, err)
		} else {
			errs[i] = addError(ss, results[j])
		}
	}
	return errs
}

// writeSessions sends the commands of every session in one pipeline (one
// per master in cluster mode) and returns each one's own result: a Redis
// error in one session's replies fails only that session. err is set when
// Redis could not be reached: then every session failed, or may have.
//
// conn_<key> is written first: a pipeline is not atomic, and a compare-and-
// delete script of the connection being replaced can run between two of
// its commands. Once conn_ holds the new id that script finds the key not
// its own; before, it runs wholly before the new routing is written. (In
// cluster mode conn_ and key_ share a slot, so they stay in this order in
// their master's pipeline.)
func (r *Redis) writeSessions(ctx context.Context, sessions []Session) (results []error, err error) {
	cmds := make([]command, 0, 4*len(sessions))
	owner := make([]int, 0, 4*len(sessions)) // owner[j]: the session of cmds[j]
	add := func(i int, key, name string, args ...any) {
		cmds = append(cmds, command{key: key, name: name, args: args})
		owner = append(owner, i)
	}
	for i, ss := range sessions {
		ck := r.connKey(ss.Key)
		if ss.ConnID != 0 {
			add(i, ck, "SET", ck, connIDArg(ss.ConnID), "PX", r.sessionTTL)
		} else {
			add(i, ck, "DEL", ck)
		}
		if ss.Mid > 0 {
			mk := r.midKey(ss.Mid)
			add(i, mk, "HSET", mk, ss.Key, ss.Server)
			add(i, mk, "PEXPIRE", mk, r.sessionTTL)
		}
		kk := r.keyKey(ss.Key)
		add(i, kk, "SET", kk, ss.Server, "PX", r.sessionTTL)
	}
	if err := r.exec(ctx, cmds); err != nil {
		return nil, err
	}
	results = make([]error, len(sessions))
	for j := range cmds {
		if i := owner[j]; results[i] == nil {
			results[i] = cmds[j].err
		}
	}
	return results, nil
}

// invalidSession reports whether s lacks a key or a server.
func invalidSession(s Session) bool { return s.Key == "" || s.Server == "" }

// addError is the error of an AddSession of s that failed with err (nil
// for nil).
func addError(s Session, err error) error {
	if err == nil {
		return nil
	}
	return &opError{kind: ErrRedis, op: sessionOp("add session", s.Mid, s.Server), err: err}
}

// errNoReplies is not expected: redigo returns one reply per command.
var errNoReplies = errors.New("dao: redis: pipeline returned fewer replies than commands")

// flush sends the n commands queued on c with Send and returns their
// replies, one per command.
func flush(c redis.Conn, timeout time.Duration, n int) ([]any, error) {
	replies, err := redis.Values(redis.DoWithTimeout(c, timeout, ""))
	if err != nil {
		return nil, err
	}
	if len(replies) != n {
		return nil, errNoReplies
	}
	return replies, nil
}

// renewSessionLua renews a session's TTLs and, when key_ had expired,
// stores the whole routing again (goim v2's Heartbeat: ExpireMapping, then
// AddMapping if the key was gone), atomically, unless conn_ holds another
// connection's id: the key then belongs to the connection that replaced
// this one, and nothing is written. A session with a connection id whose
// key_ exists on its server without a conn_ (written by a logic that did
// not store ids) takes its id in conn_.
//
//	KEYS[1] key_<key>, KEYS[2] conn_<key>, KEYS[3] mid_<mid> (absent when mid <= 0)
//	ARGV[1] server, ARGV[2] connection key, ARGV[3] TTL in ms,
//	ARGV[4] connection id in decimal ("0": none)
//
// Returns 1 if key_ existed, 0 if it was re-added, -1 if not owned.
const renewSessionLua = `
local cur = redis.call('GET', KEYS[2])
if ARGV[4] ~= '0' and cur and cur ~= ARGV[4] then
  return -1
end
local existed = redis.call('PEXPIRE', KEYS[1], ARGV[3])
if #KEYS > 2 then
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
if existed == 0 then
  if ARGV[4] ~= '0' then
    redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3])
  elseif cur then
    redis.call('DEL', KEYS[2])
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  if #KEYS > 2 then
    redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
    redis.call('PEXPIRE', KEYS[3], ARGV[3])
  end
elseif cur then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
elseif ARGV[4] ~= '0' and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3])
end
return existed
`

// Renewal is what RenewSession found and did.
type Renewal int8

// Renewals; the values are the renewal script's answers.
const (
	// NotOwned: conn_<key> holds another connection's id (the key was
	// taken over by a newer connection); nothing was written.
	NotOwned Renewal = -1
	// Readded: key_<key> was gone (expired, deleted, Redis restarted
	// empty); the whole routing was stored again, as AddSession would.
	Readded Renewal = 0
	// Renewed: the routing existed; its TTLs were extended.
	Renewed Renewal = 1
)

func (n Renewal) String() string {
	switch n {
	case NotOwned:
		return "not owned"
	case Readded:
		return "re-added"
	case Renewed:
		return "renewed"
	}
	return "Renewal(" + strconv.Itoa(int(n)) + ")"
}

// RenewSession extends the TTLs of a session's routing keys. If key_<key>
// had expired (or was deleted) it re-adds the whole routing, as AddSession
// would. When s.ConnID is not 0 and conn_<key> holds another id, it
// changes nothing and answers NotOwned. One Lua script, one round trip.
func (r *Redis) RenewSession(ctx context.Context, s Session) (Renewal, error) {
	if s.Key == "" || s.Server == "" {
		return 0, sessionArgError("renew session", s.Mid, s.Key, s.Server)
	}
	if r.cluster != nil {
		res, err := r.clusterRenewSession(ctx, s)
		if err != nil {
			return 0, &opError{kind: ErrRedis, op: sessionOp("renew session", s.Mid, s.Server), err: err}
		}
		return res, nil
	}
	var res Renewal
	err := r.do(ctx, func(c redis.Conn, timeout time.Duration) error {
		n, err := redis.Int(r.renewLua.run(c, timeout, r.sessionKeys(s.Mid, s.Key), s.Server, s.Key, r.sessionTTL, connIDArg(s.ConnID)))
		if err == nil && (n < int(NotOwned) || n > int(Renewed)) {
			err = fmt.Errorf("renew script answered %d", n)
		}
		res = Renewal(n)
		return err
	})
	if err != nil {
		return 0, &opError{kind: ErrRedis, op: sessionOp("renew session", s.Mid, s.Server), err: err}
	}
	return res, nil
}

// delSessionLua deletes a session's routing only where it still belongs
// to the connection that asks: a late Disconnect from the comet a key has
// left (goim v2 deleted blindly, erasing the routing the key's new
// connection had written on another comet), or from a connection a newer
// one on the same comet replaced, must not erase the newer connection's
// routing.
// With a connection id, a conn_ holding another id means not owned; then
// (and without an id, or without a conn_) key_ and the mid_ field are
// deleted only where they hold the server that asks.
//
//	KEYS[1] key_<key>, KEYS[2] conn_<key>, KEYS[3] mid_<mid> (absent when mid <= 0)
//	ARGV[1] server, ARGV[2] connection key, ARGV[3] connection id in
//	decimal ("0": none)
//
// Returns 1 if key_ was owned (and was deleted, with conn_), else 0.
const delSessionLua = `
if ARGV[3] ~= '0' then
  local cur = redis.call('GET', KEYS[2])
  if cur and cur ~= ARGV[3] then
    return 0
  end
end
local owned = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  owned = 1
end
if #KEYS > 2 and redis.call('HGET', KEYS[3], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[3], ARGV[2])
end
return owned
`

// DelSession removes the routing of connection s.Key if, and only if, it
// still belongs to s: when s.ConnID is not 0 and conn_<key> holds another
// id nothing is deleted; otherwise key_<key> (with conn_<key>) is deleted
// when its value is s.Server, field key of mid_<mid> when its value is
// s.Server (compare-and-delete, one Lua script). It reports whether
// key_<key> was deleted.
func (r *Redis) DelSession(ctx context.Context, s Session) (bool, error) {
	owned, errs, err := r.DelSessions(ctx, []Session{s})
	if err != nil {
		return false, err
	}
	return owned[0], errs[0]
}

// DelSessions deletes several sessions as DelSession does each, in one
// pipeline. owned[i] is DelSession's answer for sessions[i]; errs[i] is
// set only for a session with an empty key or server. err is set when
// Redis failed, and then no answer is known.
func (r *Redis) DelSessions(ctx context.Context, sessions []Session) (owned []bool, errs []error, err error) {
	owned = make([]bool, len(sessions))
	errs = make([]error, len(sessions))
	valid := make([]int, 0, len(sessions))
	for i, ss := range sessions {
		if ss.Key == "" || ss.Server == "" {
			errs[i] = sessionArgError("delete session", ss.Mid, ss.Key, ss.Server)
			continue
		}
		valid = append(valid, i)
	}
	if len(valid) == 0 {
		return owned, errs, nil
	}
	if r.cluster != nil {
		err = r.clusterDelSessions(ctx, sessions, valid, owned)
	} else {
		err = r.delSessions(ctx, sessions, valid, owned)
	}
	if err != nil {
		op := "delete sessions (" + strconv.Itoa(len(valid)) + ")"
		if len(valid) == 1 {
			op = sessionOp("delete session", sessions[valid[0]].Mid, sessions[valid[0]].Server)
		}
		return nil, errs, &opError{kind: ErrRedis, op: op, err: err}
	}
	return owned, errs, nil
}

// delSessions is DelSessions' Redis part in single mode: one pipeline of
// delete scripts for the sessions valid of sessions; it fills owned.
func (r *Redis) delSessions(ctx context.Context, sessions []Session, valid []int, owned []bool) error {
	return r.do(ctx, func(c redis.Conn, timeout time.Duration) error {
		for _, i := range valid {
			ss := sessions[i]
			if err := r.delLua.send(c, r.sessionKeys(ss.Mid, ss.Key), ss.Server, ss.Key, connIDArg(ss.ConnID)); err != nil {
				return err
			}
		}
		replies, err := flush(c, timeout, len(valid))
		if err != nil {
			return err
		}
		for j, i := range valid {
			reply, err := replies[j], error(nil)
			if e, ok := reply.(redis.Error); ok && strings.HasPrefix(string(e), "NOSCRIPT") {
				// Redis lost its script cache: this one runs alone, by source.
				ss := sessions[i]
				reply, err = r.delLua.run(c, timeout, r.sessionKeys(ss.Mid, ss.Key), ss.Server, ss.Key, connIDArg(ss.ConnID))
			}
			n, err := redis.Int(reply, err)
			if err != nil {
				return err
			}
			owned[i] = n == 1
		}
		return nil
	})
}

// ServersByKeys finds the comet of each connection key, with one MGET, and
// groups the keys by server. Keys without routing (expired, never added)
// and empty or repeated keys are left out; the keys of each server keep
// their order in keys.
func (r *Redis) ServersByKeys(ctx context.Context, keys []string) (map[string][]string, error) {
	out := make(map[string][]string)
	keys = uniqueStrings(keys)
	if len(keys) == 0 {
		return out, nil
	}
	var servers []string
	var err error
	if r.cluster != nil {
		servers, err = r.clusterServersByKeys(ctx, keys)
	} else {
		args := make([]any, len(keys))
		for i, k := range keys {
			args[i] = r.keyKey(k)
		}
		err = r.do(ctx, func(c redis.Conn, timeout time.Duration) error {
			var err error
			servers, err = redis.Strings(redis.DoWithTimeout(c, timeout, "MGET", args...))
			return err
		})
	}
	if err != nil {
		return nil, &opError{kind: ErrRedis, op: "servers by keys (" + strconv.Itoa(len(keys)) + " keys)", err: err}
	}
	for i, s := range servers {
		if s != "" && i < len(keys) {
			out[s] = append(out[s], keys[i])
		}
	}
	return out, nil
}

// KeysByMids finds the connections of members, with one pipelined HGETALL
// per member, and groups their keys by server. Members without
// connections, and mids <= 0 (anonymous), are left out. The order of
// the keys of a server is unspecified.
func (r *Redis) KeysByMids(ctx context.Context, mids []int64) (map[string][]string, error) {
	out := make(map[string][]string)
	mids = uniqueMids(mids)
	if len(mids) == 0 {
		return out, nil
	}
	cmds := make([]command, len(mids))
	for i, mid := range mids {
		mk := r.midKey(mid)
		cmds[i] = command{key: mk, name: "HGETALL", args: []any{mk}}
	}
	err := r.exec(ctx, cmds)
	if err == nil {
		err = firstError(cmds)
	}
	if err != nil {
		return nil, &opError{kind: ErrRedis, op: "keys by mids (" + strconv.Itoa(len(mids)) + " mids)", err: err}
	}
	for i := range cmds {
		fields, err := redis.StringMap(cmds[i].reply, nil)
		if err != nil {
			return nil, &opError{kind: ErrRedis, op: "keys by mids", err: err}
		}
		for key, server := range fields {
			if server != "" {
				out[server] = append(out[server], key)
			}
		}
	}
	return out, nil
}

// do runs fn on a pooled connection; fn must send its commands through
// redis.DoWithTimeout with the timeout it is given, and be idempotent: if
// the connection turns out to have been closed by the server (EOF, reset:
// Redis restarted since it was pooled), do marks older idle connections
// stale and runs fn once more on a fresh one.
func (r *Redis) do(ctx context.Context, fn func(c redis.Conn, timeout time.Duration) error) error {
	if r.closed.Load() {
		return ErrClosed
	}
	err := r.try(ctx, fn)
	if err != nil && peerClosed(err) && ctx.Err() == nil {
		r.staleBefore.Store(time.Now().UnixNano())
		err = r.try(ctx, fn)
	}
	return err
}

// opTimeout bounds an operation: read_timeout, or what is left of ctx's
// deadline when that is sooner. It fails when ctx has ended.
func (r *Redis) opTimeout(ctx context.Context) (time.Duration, error) {
	if r.closed.Load() {
		return 0, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	timeout := r.readTimeout
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return 0, context.DeadlineExceeded
		}
		timeout = min(timeout, left)
	}
	return timeout, nil
}

// command is one command of an operation run by exec; in cluster mode
// key's slot routes it. exec sets reply, or err to the command's error
// reply.
type command struct {
	key    string
	name   string
	args   []any
	script *luaScript // for an EVALSHA: the script, sent by source on NOSCRIPT
	reply  any
	err    error
}

// set records reply as c's answer. An EVALSHA answered NOSCRIPT (Redis, or
// this cluster node, lost its script cache) is sent again on conn as EVAL.
// The error is a transport failure of that EVAL.
func (c *command) set(conn redis.Conn, timeout time.Duration, reply any) error {
	c.reply, c.err = reply, nil
	e, ok := reply.(redis.Error)
	if !ok {
		return nil
	}
	c.reply, c.err = nil, e
	if c.script == nil || !isNoScript(e) {
		return nil
	}
	reply, err := redis.DoWithTimeout(conn, timeout, "EVAL", c.script.withSource(c.args)...)
	if e, ok := err.(redis.Error); ok {
		c.err = e
		return nil
	}
	c.reply, c.err = reply, nil
	return err
}

// exec runs cmds and records each one's reply or error reply: in single
// mode as one pipeline on one connection; in cluster mode as one pipeline
// per master, in parallel (see cluster.exec). The error is a failure to
// reach Redis (or a node): then any command may or may not have run.
func (r *Redis) exec(ctx context.Context, cmds []command) error {
	if len(cmds) == 0 {
		return nil
	}
	if r.cluster != nil {
		timeout, err := r.opTimeout(ctx)
		if err != nil {
			return err
		}
		return r.cluster.exec(timeout, cmds)
	}
	return r.do(ctx, func(c redis.Conn, timeout time.Duration) error {
		for i := range cmds {
			if err := c.Send(cmds[i].name, cmds[i].args...); err != nil {
				return err
			}
		}
		replies, err := flush(c, timeout, len(cmds))
		if err != nil {
			return err
		}
		for i, reply := range replies {
			if err := cmds[i].set(c, timeout, reply); err != nil {
				return err
			}
		}
		return nil
	})
}

func (r *Redis) try(ctx context.Context, fn func(c redis.Conn, timeout time.Duration) error) error {
	timeout, err := r.opTimeout(ctx)
	if err != nil {
		return err
	}
	c, err := r.pool.GetContext(ctx)
	if err != nil {
		if r.closed.Load() {
			return ErrClosed
		}
		return err
	}
	err = fn(c, timeout)
	// Close returns c to the pool, or closes it when it failed.
	if cerr := c.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// testOnBorrow drops idle connections that were pooled before the server
// was last seen closing one.
func (r *Redis) testOnBorrow(_ redis.Conn, lastUsed time.Time) error {
	if lastUsed.UnixNano() < r.staleBefore.Load() {
		return errStaleConn
	}
	return nil
}

var errStaleConn = errors.New("pooled before the server closed connections")

// peerClosed reports whether err says the server closed the connection
// (as opposed to a timeout, a refused dial or an error reply).
func peerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// luaScript is a Lua script run with EVALSHA, and EVAL when Redis does not
// have it cached yet (NOSCRIPT).
type luaScript struct {
	src string
	sha string // hex SHA-1 of src
}

func newLuaScript(src string) luaScript {
	sum := sha1.Sum([]byte(src))
	return luaScript{src: src, sha: hex.EncodeToString(sum[:])}
}

func (s luaScript) run(c redis.Conn, timeout time.Duration, keys []string, args ...any) (any, error) {
	a := s.args(keys, args)
	reply, err := redis.DoWithTimeout(c, timeout, "EVALSHA", a...)
	if e, ok := err.(redis.Error); ok && strings.HasPrefix(string(e), "NOSCRIPT") {
		a[0] = s.src
		reply, err = redis.DoWithTimeout(c, timeout, "EVAL", a...)
	}
	return reply, err
}

// send queues an EVALSHA of the script in c's pipeline; a NOSCRIPT reply
// is the caller's to handle (run falls back to the source).
func (s luaScript) send(c redis.Conn, keys []string, args ...any) error {
	return c.Send("EVALSHA", s.args(keys, args)...)
}

// command is an EVALSHA of the script as a command for exec, routed by key.
func (s *luaScript) command(key string, keys []string, args ...any) command {
	return command{key: key, name: "EVALSHA", args: s.args(keys, args), script: s}
}

// withSource turns EVALSHA's arguments into EVAL's: the source instead of
// the hash.
func (s luaScript) withSource(evalshaArgs []any) []any {
	a := make([]any, len(evalshaArgs))
	copy(a, evalshaArgs)
	a[0] = s.src
	return a
}

// args are EVALSHA's arguments: the script's hash, the keys, then args.
func (s luaScript) args(keys []string, args []any) []any {
	a := make([]any, 0, 2+len(keys)+len(args))
	a = append(a, s.sha, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	return append(a, args...)
}

func (r *Redis) midKey(mid int64) string {
	if r.cluster != nil {
		return r.prefix + midPrefix + "{" + strconv.FormatInt(mid, 10) + "}"
	}
	return r.prefix + midPrefix + strconv.FormatInt(mid, 10)
}

func (r *Redis) keyKey(key string) string {
	if r.cluster != nil {
		return r.prefix + keyPrefix + clusterKeyTagOpen + key + "}"
	}
	return r.prefix + keyPrefix + key
}

func (r *Redis) connKey(key string) string {
	if r.cluster != nil {
		return r.prefix + connPrefix + clusterKeyTagOpen + key + "}"
	}
	return r.prefix + connPrefix + key
}

// onlinePrefixKey is what precedes a server id in its report's key.
func (r *Redis) onlinePrefixKey() string {
	if r.cluster != nil {
		return r.prefix + clusterOnlineTag + onlinePrefix
	}
	return r.prefix + onlinePrefix
}

// connIDArg is a connection id as the session scripts take it: decimal,
// "0" for none.
func connIDArg(id uint64) string { return strconv.FormatUint(id, 10) }

func (r *Redis) onlineKey(server string) string { return r.onlinePrefixKey() + server }

func (r *Redis) onlineServersKey() string {
	if r.cluster != nil {
		return r.prefix + clusterOnlineTag + onlineServersName
	}
	return r.prefix + onlineServersName
}

// epochKey is the key of the data set's epoch (see StoreOnline).
func (r *Redis) epochKey() string {
	if r.cluster != nil {
		return r.prefix + clusterOnlineTag + epochName
	}
	return r.prefix + epochName
}

// sessionKeys returns the KEYS of the session scripts: key_<key>,
// conn_<key>, then mid_<mid> when mid > 0.
func (r *Redis) sessionKeys(mid int64, key string) []string {
	if mid > 0 {
		return []string{r.keyKey(key), r.connKey(key), r.midKey(mid)}
	}
	return []string{r.keyKey(key), r.connKey(key)}
}

// sessionOp names a session operation in an error. The connection key is
// left out: it is a bearer of the session and errors are logged.
func sessionOp(op string, mid int64, server string) string {
	return op + " mid=" + strconv.FormatInt(mid, 10) + " server=" + strconv.Quote(server)
}

func sessionArgError(op string, mid int64, key, server string) error {
	what := "empty server"
	if key == "" {
		what = "empty key"
	}
	return fmt.Errorf("dao: redis: %s: %w: %s", sessionOp(op, mid, server), ErrInvalidArgument, what)
}

// uniqueStrings returns s without empty and repeated elements, keeping the
// first occurrences in order. It returns s itself when nothing is dropped.
func uniqueStrings(s []string) []string {
	if len(s) == 1 && s[0] != "" {
		return s
	}
	seen := make(map[string]struct{}, len(s))
	out := s[:0:0]
	dropped := false
	for _, v := range s {
		if _, dup := seen[v]; dup || v == "" {
			dropped = true
			continue
		}
		seen[v] = struct{}{}
		out = append(out, v)
	}
	if !dropped {
		return s
	}
	return out
}

// uniqueMids returns the mids > 0 of mids, without repeats, in order.
func uniqueMids(mids []int64) []int64 {
	seen := make(map[int64]struct{}, len(mids))
	out := make([]int64, 0, len(mids))
	for _, m := range mids {
		if _, dup := seen[m]; dup || m <= 0 {
			continue
		}
		seen[m] = struct{}{}
		out = append(out, m)
	}
	return out
}
