// Package discovery is goim's client of bilibili/discovery's HTTP protocol
// (server v1.2.0). Comets register themselves (app id "goim.comet") with
// their addresses and load metadata; logic and job watch "goim.comet";
// comets watch "goim.logic".
//
// A Watcher long-polls /discovery/polls and, as a backstop, fetches the
// whole app every FetchInterval: the server's long poll misses some changes
// (a metadata set made while no poll is pending, the cancel of an app's
// last instance), and the periodic fetch heals them within FetchInterval.
// Each poll request names itself with a fresh poller id, so the server's
// clean-up of one poll cannot remove the next one.
//
// The embedded server for tests and the all-in-one binary is in the
// sub-package embedded, which keeps kratos' global side effects out of
// binaries that only need this client.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goim/goim/internal/conf"
)

const (
	// evictAfter is how long the server keeps an instance that is not
	// renewed (registry._evictThreshold).
	evictAfter = 90 * time.Second
	// holdHeader caps, in milliseconds, how long a kratos server holds a
	// request; the server takes 20 ms off the value. discovery never holds
	// a poll longer than 30 s.
	holdHeader = "X1-Bmspy-Timeout"
	// maxBody bounds a response body read into memory.
	maxBody = 32 << 20
	// logEvery: a key that keeps failing is logged on its first failure
	// and then on every logEvery-th consecutive one.
	logEvery = 20
)

// Config configures a Client. Zero-valued fields are not defaults: start
// from DefaultConfig.
type Config struct {
	// Nodes are the discovery servers, "host:port". Required, no default.
	// A request goes to the node that answered last and, if it fails, to
	// the next ones in turn.
	Nodes []string `toml:"nodes"`
	// Region of the registered instances. Default "sh".
	Region string `toml:"region"`
	// Zone (data centre) of the registered instances; discovery requires
	// one. Watchers see every zone. Default "sh001".
	Zone string `toml:"zone"`
	// Env is the deployment environment; an instance is only seen by
	// watchers of the same env. Default "dev".
	Env string `toml:"env"`
	// Host names this instance in discovery (unique within an app).
	// Default "": os.Hostname() at New.
	Host string `toml:"host"`
	// RenewInterval is the period of renewals; the server evicts an
	// instance not renewed for 90 s. Must be below 90 s. Default 30s.
	RenewInterval conf.Duration `toml:"renew_interval"`
	// PollTimeout is how long the server may hold a long poll before it
	// answers "not modified"; the server caps it at 30 s. Default 30s.
	PollTimeout conf.Duration `toml:"poll_timeout"`
	// FetchInterval is the period of the backstop fetch of a watched app:
	// the longest a change the long poll missed stays unseen. Default 10s.
	FetchInterval conf.Duration `toml:"fetch_interval"`
	// RequestTimeout bounds each request to a node, plus the hold for a
	// long poll, and the connect time. Default 3s.
	RequestTimeout conf.Duration `toml:"request_timeout"`
}

// DefaultConfig returns the defaults; Nodes is left empty (required).
func DefaultConfig() Config {
	return Config{
		Region:         "sh",
		Zone:           "sh001",
		Env:            "dev",
		RenewInterval:  conf.Duration(30 * time.Second),
		PollTimeout:    conf.Duration(30 * time.Second),
		FetchInterval:  conf.Duration(10 * time.Second),
		RequestTimeout: conf.Duration(3 * time.Second),
	}
}

// Validate records every problem of c in p, with key paths relative to p.
func (c Config) Validate(p *conf.Problems) {
	if p.Check(len(c.Nodes) > 0, "nodes", `must list at least one discovery server "host:port"`) {
		for i, n := range c.Nodes {
			_, port, err := net.SplitHostPort(n)
			p.Check(err == nil && port != "" && !strings.Contains(n, "/"),
				conf.Index("nodes", i), `must be "host:port" without a scheme, got %q`, n)
		}
	}
	p.Check(c.Zone != "", "zone", "must not be empty: discovery requires a zone")
	p.Check(c.Env != "", "env", "must not be empty")
	p.Check(c.RenewInterval > 0 && c.RenewInterval.D() < evictAfter, "renew_interval",
		"must be > 0 and below %v, after which the server evicts an instance; got %v", evictAfter, c.RenewInterval)
	p.Check(c.PollTimeout > 0, "poll_timeout", "must be > 0, got %v", c.PollTimeout)
	p.Check(c.FetchInterval > 0, "fetch_interval", "must be > 0, got %v", c.FetchInterval)
	p.Check(c.RequestTimeout > 0, "request_timeout", "must be > 0, got %v", c.RequestTimeout)
}

// Instance is one registered instance, as discovery's JSON has it.
type Instance struct {
	Region          string            `json:"region"`
	Zone            string            `json:"zone"`
	Env             string            `json:"env"`
	AppID           string            `json:"appid"`
	Hostname        string            `json:"hostname"`
	Addrs           []string          `json:"addrs"`
	Version         string            `json:"version"`
	LatestTimestamp int64             `json:"latest_timestamp"` // ns, set by the server
	Metadata        map[string]string `json:"metadata"`
}

// Client talks to a discovery cluster. Its goroutines (renew loops and
// watchers) run until Close.
type Client struct {
	cfg    Config
	log    *slog.Logger
	tr     *http.Transport
	hc     *http.Client
	ctx    context.Context // cancelled by Close; parent of every loop
	cancel context.CancelFunc
	poller string        // prefix of poller ids, unique per client
	seq    atomic.Uint64 // numbers poll requests
	prefer atomic.Int32  // index of the node that answered last
	fails  failCounter

	mu     sync.Mutex
	closed bool
	regs   map[*Registration]struct{} // not yet cancelled
	wg     sync.WaitGroup
}

// New returns a client for cfg; it starts nothing. logger may be nil.
func New(cfg Config, logger *slog.Logger) (*Client, error) {
	var p conf.Problems
	cfg.Validate(&p)
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if cfg.Host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("discovery: host not set and no hostname: %v", err)
		}
		cfg.Host = h
	}
	cfg.Nodes = append([]string(nil), cfg.Nodes...)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.RequestTimeout.D(), KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		cfg:    cfg,
		log:    logger,
		tr:     tr,
		hc:     &http.Client{Transport: tr}, // each request has a context deadline
		ctx:    ctx,
		cancel: cancel,
		poller: fmt.Sprintf("%s.%d.%08x", cfg.Host, os.Getpid(), rand.Uint32()),
		regs:   make(map[*Registration]struct{}),
	}, nil
}

// Close stops every goroutine the client started and waits for them. It
// cancels (deregisters) the registrations not yet cancelled, best effort,
// and returns their errors. Later calls return nil; other methods then
// fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	regs := make([]*Registration, 0, len(c.regs))
	for r := range c.regs {
		regs = append(regs, r)
	}
	c.mu.Unlock()

	c.cancel()
	var errs []error
	for _, r := range regs {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RequestTimeout.D()*time.Duration(len(c.cfg.Nodes)))
		if err := r.Cancel(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	c.wg.Wait()
	c.tr.CloseIdleConnections()
	return errors.Join(errs...)
}

// reserve counts a goroutine about to start in c.wg, unless c is closed.
// The goroutine must call c.wg.Done.
func (c *Client) reserve() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.wg.Add(1)
	return nil
}

// reply is the envelope of every answer.
type reply struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

func decodeReply(body []byte) (reply, error) {
	var r reply
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("bad answer %.100q: %w", body, err)
	}
	return r, nil
}

// call sends a request to the nodes in turn, starting with the one that
// answered last, until one answers: HTTP 200 with a JSON envelope. It
// returns the envelope's data, or an error naming op and appID that wraps
// a *CodeError if the code is not 0, or ErrUnavailable if no node
// answered. hold > 0 makes it a long poll the server may hold that long.
func (c *Client) call(ctx context.Context, op, appID, method, path string, form url.Values, hold time.Duration) (json.RawMessage, error) {
	n := len(c.cfg.Nodes)
	first := int(c.prefer.Load())
	var errs nodesError
	for k := range n {
		i := (first + k) % n
		node := c.cfg.Nodes[i]
		r, err := c.callNode(ctx, node, method, path, form, hold)
		if err == nil {
			c.prefer.Store(int32(i))
			c.fails.succeeded(c.log, "node "+node)
			if err := answer(r, node); err != nil {
				return nil, opError(op, appID, err)
			}
			return r.Data, nil
		}
		err = fmt.Errorf("node %s: %w", node, err)
		if ctx.Err() != nil {
			return nil, opError(op, appID, err)
		}
		c.fails.failed(c.log, "node "+node, err)
		errs = append(errs, err)
	}
	return nil, opError(op, appID, errs)
}

func (c *Client) callNode(ctx context.Context, node, method, path string, form url.Values, hold time.Duration) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout.D()+hold)
	defer cancel()
	u, body := "http://"+node+path, io.Reader(nil)
	if method == http.MethodGet {
		u += "?" + form.Encode()
	} else {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return reply{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if hold > 0 {
		req.Header.Set(holdHeader, strconv.FormatInt(hold.Milliseconds()+20, 10))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return reply{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return reply{}, fmt.Errorf("HTTP %s: %.100q", resp.Status, b)
	}
	return decodeReply(b)
}

// answer turns a non-zero code into a *CodeError.
func answer(r reply, node string) error {
	if r.Code == codeOK {
		return nil
	}
	return &CodeError{Node: node, Code: r.Code, Message: r.Message}
}

// failCounter rate-limits warnings about a key (a node, a loop) that keeps
// failing: the first failure and every logEvery-th consecutive one are
// logged, and the recovery once.
type failCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (f *failCounter) failed(log *slog.Logger, key string, err error) {
	f.mu.Lock()
	if f.n == nil {
		f.n = make(map[string]int)
	}
	f.n[key]++
	n := f.n[key]
	f.mu.Unlock()
	if n == 1 || n%logEvery == 0 {
		log.Warn("discovery: "+key+" failed", "consecutive_failures", n, "err", err)
	}
}

func (f *failCounter) succeeded(log *slog.Logger, key string) {
	f.mu.Lock()
	n := f.n[key]
	delete(f.n, key)
	f.mu.Unlock()
	if n > 0 {
		log.Info("discovery: "+key+" recovered", "failures", n)
	}
}
