package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goim/goim/internal/secret"
)

// Push kinds: logic's push endpoints.
const (
	KindKeys = "keys"
	KindMids = "mids"
	KindRoom = "room"
	KindAll  = "all"
)

// PushConfig is what the push subcommand sends.
type PushConfig struct {
	// Run is the run id written into every body.
	Run string
	// API is logic's HTTP base URL, "http://127.0.0.1:3111", or several,
	// comma-separated: each stream's pushes then go to them in turn, so
	// several logic instances push to one stream concurrently.
	API string
	// Token, when set, is sent as "Authorization: Bearer <token>".
	Token string
	// Kind is keys, mids, room or all.
	Kind string
	// Op is the push's operation (> 0).
	Op int32
	// Targets, by kind, used round-robin, one per request: Rooms
	// ("type://id"), Mids, Keys. all has one target.
	Rooms []string
	Mids  []int64
	Keys  []string
	// Speed is the all push's speed parameter (0: as fast as possible).
	Speed int32
	// Rate is the open-loop target, pushes per second.
	Rate float64
	// Concurrency bounds requests in flight (open loop), or is the number
	// of back-to-back senders (flood).
	Concurrency int
	// Flood sends closed loop: every sender sends its next push as soon as
	// the last is answered.
	Flood bool
	// Count stops after this many pushes; 0 means no count bound.
	Count int
	// Duration stops sending after this long (required).
	Duration time.Duration
	// Size pads bodies to this many bytes (at most MaxBodySize).
	Size int
	// HTTPTimeout bounds one request.
	HTTPTimeout time.Duration
	// AllowRemote permits a non-loopback API.
	AllowRemote bool
}

// EnvToken is the variable the push API's bearer token is read from when
// neither -token nor -token-file is given.
const EnvToken = "GOIM_HTTP_TOKEN"

// ResolveToken returns the push API's bearer token (PushConfig.Token):
// the first token of file when file is set (one per line, blank lines and
// lines starting with "#" ignored, so logic's http.tokens_file itself
// will do), else inline, else the variable EnvToken (its first entry when
// it holds a comma- or newline-separated list); "" when none is set.
// Setting both file and inline is a usage error.
func ResolveToken(file, inline string) (string, error) {
	switch {
	case file != "" && inline != "":
		return "", fmt.Errorf("%w: -token and -token-file: give one", ErrUsage)
	case file != "":
		lines, err := secret.ReadLines(file)
		if err != nil {
			return "", fmt.Errorf("%w: -token-file: %v", ErrUsage, err)
		}
		return lines[0], nil
	case inline != "":
		return inline, nil
	}
	if l := secret.List(os.Getenv(EnvToken)); len(l) > 0 {
		return l[0], nil
	}
	return "", nil
}

// maxDuration bounds any load phase.
const maxDuration = 24 * time.Hour

// Validate reports every problem of c, each wrapping ErrUsage.
func (c PushConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...)))
	}
	if !ValidRun(c.Run) {
		bad("-run %q: want 1..%d of [A-Za-z0-9_.-]", c.Run, MaxRunLen)
	}
	apis := SplitList(c.API)
	if len(apis) == 0 {
		bad("-api %q: want http://host:port", c.API)
	}
	for _, api := range apis {
		if u, err := url.Parse(api); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			bad("-api %q: want http://host:port", api)
		}
	}
	if c.Op <= 0 {
		bad("-op %d: want > 0", c.Op)
	}
	switch c.Kind {
	case KindRoom:
		if len(c.Rooms) == 0 {
			bad("-kind room needs -room")
		}
		for _, r := range c.Rooms {
			typ, id, ok := strings.Cut(r, "://")
			if !ok || typ == "" || id == "" || !ValidStream(RoomStream(r)) {
				bad("room %q: want type://id, printable ASCII without spaces", r)
			}
		}
	case KindMids:
		if len(c.Mids) == 0 {
			bad("-kind mids needs -mids")
		}
		for _, m := range c.Mids {
			if m <= 0 {
				bad("mid %d: want > 0", m)
				break
			}
		}
	case KindKeys:
		if len(c.Keys) == 0 {
			bad("-kind keys needs -keys")
		}
		for _, k := range c.Keys {
			if !ValidStream(KeyStream(k)) {
				bad("key %q: printable ASCII without spaces or commas", k)
				break
			}
		}
	case KindAll:
	default:
		bad("-kind %q: want keys, mids, room or all", c.Kind)
	}
	if c.Speed < 0 {
		bad("-speed %d: want >= 0", c.Speed)
	}
	if !c.Flood && (c.Rate <= 0 || c.Rate > 1e6) {
		bad("-rate %v: want 0 < rate <= 1e6 (or -flood)", c.Rate)
	}
	if c.Concurrency < 1 || c.Concurrency > 10000 {
		bad("-concurrency %d: want 1..10000", c.Concurrency)
	}
	if c.Count < 0 {
		bad("-count %d: want >= 0", c.Count)
	}
	if c.Duration <= 0 || c.Duration > maxDuration {
		bad("-duration %v: want > 0 and <= %v", c.Duration, maxDuration)
	}
	if c.Size < 0 || c.Size > MaxBodySize {
		bad("-size %d: want 0..%d", c.Size, MaxBodySize)
	}
	if c.HTTPTimeout <= 0 {
		bad("-http-timeout %v: want > 0", c.HTTPTimeout)
	}
	return errors.Join(errs...)
}

// CheckTargets refuses a non-loopback API unless AllowRemote is set.
func (c PushConfig) CheckTargets(ctx context.Context) error {
	if c.AllowRemote {
		return nil
	}
	for _, api := range SplitList(c.API) {
		if err := checkURL(ctx, api); err != nil {
			return fmt.Errorf("api %w", err)
		}
	}
	return nil
}

// target is one stream: where its pushes go and what was sent.
type target struct {
	stream, kind, target string
	urls                 []string // one per API, used in turn

	mu     sync.Mutex // guards sent, acked and failed
	sent   []int64    // send time of seq i+1
	acked  []int64    // accept time of seq i+1, 0 until then
	failed []uint64
}

// Pusher sends pushes to logic's HTTP API and records every one.
type Pusher struct {
	cfg     PushConfig
	client  *http.Client
	targets []*target
	next    atomic.Uint64 // round-robin over targets

	latency  *Histogram
	sent     atomic.Uint64
	accepted atomic.Uint64
	failed   atomic.Uint64
	behind   atomic.Uint64

	mu      sync.Mutex // guards answers
	answers map[string]uint64

	start, end atomic.Int64
}

// NewPusher checks cfg and builds a Pusher; it sends nothing yet.
func NewPusher(cfg PushConfig) (*Pusher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	apis := SplitList(cfg.API)
	op := strconv.FormatInt(int64(cfg.Op), 10)
	p := &Pusher{cfg: cfg, latency: NewHistogram(), answers: make(map[string]uint64)}
	add := func(stream, kind, tgt, path string, q url.Values) {
		q.Set("operation", op)
		t := &target{stream: stream, kind: kind, target: tgt}
		for _, api := range apis {
			t.urls = append(t.urls, strings.TrimSuffix(api, "/")+path+"?"+q.Encode())
		}
		p.targets = append(p.targets, t)
	}
	switch cfg.Kind {
	case KindRoom:
		for _, r := range dedup(cfg.Rooms) {
			typ, id, _ := strings.Cut(r, "://")
			add(RoomStream(r), KindRoom, r, "/goim/push/room", url.Values{"type": {typ}, "room": {id}})
		}
	case KindMids:
		for _, m := range dedup(cfg.Mids) {
			s := strconv.FormatInt(m, 10)
			add(MidStream(m), KindMids, s, "/goim/push/mids", url.Values{"mids": {s}})
		}
	case KindKeys:
		for _, k := range dedup(cfg.Keys) {
			add(KeyStream(k), KindKeys, k, "/goim/push/keys", url.Values{"keys": {k}})
		}
	case KindAll:
		add(AllStream(cfg.Op), KindAll, "", "/goim/push/all", url.Values{"speed": {strconv.FormatInt(int64(cfg.Speed), 10)}})
	}
	p.client = &http.Client{
		Timeout: cfg.HTTPTimeout,
		Transport: &http.Transport{
			MaxIdleConns:        cfg.Concurrency,
			MaxIdleConnsPerHost: cfg.Concurrency,
			MaxConnsPerHost:     cfg.Concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
	return p, nil
}

func dedup[T comparable](in []T) []T {
	seen := make(map[T]bool, len(in))
	var out []T
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// Run sends until Count pushes were sent, Duration has passed or ctx
// ends, then waits for the answers still due (each bounded by
// HTTPTimeout). Open loop: slot i is due at start + i/Rate; a slot that
// finds every one of the Concurrency senders busy is not sent but counted
// as behind schedule, so an overloaded server shows as a missed rate, not
// as a silently slower one.
func (p *Pusher) Run(ctx context.Context) {
	start := time.Now()
	p.start.Store(start.UnixNano())
	defer func() { p.end.Store(time.Now().UnixNano()) }()
	deadline := start.Add(p.cfg.Duration)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// Requests outlive the sending window: an answer still due is waited
	// for (HTTPTimeout bounds it), so no push is left unknown.
	reqCtx := context.WithoutCancel(ctx)
	var senders sync.WaitGroup
	defer senders.Wait()
	if p.cfg.Flood {
		var quota atomic.Int64
		quota.Store(int64(p.cfg.Count))
		take := func() bool { return p.cfg.Count == 0 || quota.Add(-1) >= 0 }
		for range p.cfg.Concurrency {
			senders.Go(func() {
				var buf []byte
				for ctx.Err() == nil && take() {
					buf = p.send(reqCtx, buf)
				}
			})
		}
		return
	}
	// A slot takes one of Concurrency tokens, or finds none and is behind.
	tokens := make(chan struct{}, p.cfg.Concurrency)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	dispatched := 0
	for i := 0; p.cfg.Count == 0 || dispatched < p.cfg.Count; i++ {
		due := start.Add(time.Duration(float64(i) / p.cfg.Rate * float64(time.Second)))
		if !due.Before(deadline) {
			return
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case tokens <- struct{}{}:
			dispatched++
			senders.Go(func() {
				p.send(reqCtx, nil)
				<-tokens
			})
		default:
			p.behind.Add(1)
		}
	}
}

// send sends the next push and records its answer; buf is reused for
// bodies.
func (p *Pusher) send(ctx context.Context, buf []byte) []byte {
	t := p.targets[(p.next.Add(1)-1)%uint64(len(p.targets))]
	t.mu.Lock()
	seq := uint64(len(t.sent)) + 1
	now := time.Now().UnixNano()
	if n := len(t.sent); n > 0 {
		now = max(now, t.sent[n-1]) // non-decreasing per stream
	}
	t.sent = append(t.sent, now)
	t.acked = append(t.acked, 0)
	t.mu.Unlock()
	buf = AppendBody(buf[:0], p.cfg.Run, t.stream, seq, now, p.cfg.Size)
	p.sent.Add(1)

	began := time.Now()
	answer, ok := p.post(ctx, t.urls[seq%uint64(len(t.urls))], buf)
	p.latency.Record(time.Since(began).Nanoseconds())
	p.mu.Lock()
	p.answers[answer]++
	p.mu.Unlock()
	if ok {
		p.accepted.Add(1)
		t.mu.Lock()
		t.acked[seq-1] = time.Now().UnixNano()
		t.mu.Unlock()
		return buf
	}
	p.failed.Add(1)
	t.mu.Lock()
	t.failed = append(t.failed, seq)
	t.mu.Unlock()
	return buf
}

// post sends one push and names its answer: "status/code", or
// "error/kind" when there is none. ok means accepted (200, code 0).
func (p *Pusher) post(ctx context.Context, url string, body []byte) (answer string, ok bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "error/request", false
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if p.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.cfg.Token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return "error/" + errKind(err), false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return strconv.Itoa(resp.StatusCode) + "/unread", false
	}
	var env struct {
		Code *int `json:"code"`
	}
	if json.Unmarshal(b, &env) != nil || env.Code == nil {
		return strconv.Itoa(resp.StatusCode) + "/?", false
	}
	return strconv.Itoa(resp.StatusCode) + "/" + strconv.Itoa(*env.Code), resp.StatusCode == http.StatusOK && *env.Code == 0
}

// pushProgress is what the progress line shows of the pusher.
type pushProgress struct {
	sent, accepted, failed, behind uint64
	latency                        *HistData
}

func (p *Pusher) progress() pushProgress {
	return pushProgress{sent: p.sent.Load(), accepted: p.accepted.Load(), failed: p.failed.Load(),
		behind: p.behind.Load(), latency: p.latency.Snapshot()}
}

// Close releases idle HTTP connections.
func (p *Pusher) Close() { p.client.CloseIdleConnections() }

// Record returns what was sent. Call it after Run.
func (p *Pusher) Record() *PushRecord {
	p.mu.Lock()
	answers := maps.Clone(p.answers)
	p.mu.Unlock()
	r := &PushRecord{
		Run: p.cfg.Run, Kind: p.cfg.Kind, Op: p.cfg.Op, Flood: p.cfg.Flood, Concurrency: p.cfg.Concurrency,
		Start: p.start.Load(), End: p.end.Load(),
		Sent: p.sent.Load(), Accepted: p.accepted.Load(), Failed: p.failed.Load(), Behind: p.behind.Load(),
		Answers: answers, Latency: *p.latency.Snapshot(),
	}
	if !p.cfg.Flood {
		r.Rate = p.cfg.Rate
	}
	for _, t := range p.targets {
		t.mu.Lock()
		ps := PushStream{Stream: t.stream, Kind: t.kind, Target: t.target, Sent: slices.Clone(t.sent), Acked: slices.Clone(t.acked),
			Failed: slices.Clone(t.failed)}
		t.mu.Unlock()
		if ps.Sent == nil {
			ps.Sent, ps.Acked = []int64{}, []int64{}
		}
		slices.Sort(ps.Failed)
		r.Streams = append(r.Streams, ps)
	}
	return r
}
