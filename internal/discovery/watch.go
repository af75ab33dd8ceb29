package discovery

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

const (
	// minHold: a poll the server would hold for less than this is not
	// worth sending; the watcher waits for the next fetch instead.
	minHold = 50 * time.Millisecond
	// retryDelay is the pause after a poll that no node answered.
	retryDelay = time.Second
)

// Watcher follows the instances of one app in every zone. Its goroutine
// belongs to the Client and stops with the context given to Watch or with
// Client.Close.
type Watcher struct {
	c       *Client
	appID   string
	ready   chan struct{} // closed on the first snapshot
	done    chan struct{} // closed when the loop has returned
	changed chan struct{} // capacity 1

	mu   sync.Mutex
	snap []Instance // sorted by zone, hostname; never modified in place
	have bool
	err  error // why the loop ended; set before done is closed
}

// Watch starts following appID until ctx ends or the client is closed.
// The watcher fetches the app at once and then every FetchInterval, and
// long-polls in between.
func (c *Client) Watch(ctx context.Context, appID string) *Watcher {
	w := &Watcher{
		c:       c,
		appID:   appID,
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		changed: make(chan struct{}, 1),
	}
	err := errors.New("empty app id")
	if appID != "" {
		err = c.reserve()
	}
	if err != nil {
		w.err = opError("watch", appID, err)
		close(w.done)
		return w
	}
	ctx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(c.ctx, cancel)
	go func() {
		defer c.wg.Done()
		defer cancel()
		defer stopOnClose()
		w.run(ctx)
	}()
	return w
}

// Instances returns the latest snapshot, all zones, sorted by zone and
// hostname; nil before the first one. The caller may modify it.
func (w *Watcher) Instances() []Instance {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.have {
		return nil
	}
	out := make([]Instance, len(w.snap))
	for i, ins := range w.snap {
		out[i] = cloneInstance(ins)
	}
	return out
}

// Changed receives after each snapshot that differs from the previous one
// (including the first one, and an empty one when the app's last instance
// went away). Several changes may be coalesced into one receive: read
// Instances after it.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

// Ready waits for the first snapshot. It fails with ctx's error, or with
// the reason the watcher stopped (ErrClosed, the Watch context's error)
// before it had one.
func (w *Watcher) Ready(ctx context.Context) error {
	select {
	case <-w.ready:
		return nil
	case <-w.done:
		select {
		case <-w.ready:
			return nil
		default:
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *Watcher) run(ctx context.Context) {
	defer func() {
		err := ErrClosed
		if w.c.ctx.Err() == nil {
			err = context.Cause(ctx)
		}
		w.mu.Lock()
		w.err = opError("watch", w.appID, err)
		w.mu.Unlock()
		close(w.done)
	}()
	cfg := w.c.cfg
	fetchKey, pollKey := "fetch "+w.appID, "poll "+w.appID
	var latest int64 // the app's latest_timestamp as last seen
	nextFetch := time.Now()
	for ctx.Err() == nil {
		if !time.Now().Before(nextFetch) {
			nextFetch = time.Now().Add(cfg.FetchInterval.D())
			s, err := w.fetch(ctx)
			if err != nil {
				if ctx.Err() == nil {
					w.c.fails.failed(w.c.log, fetchKey, err)
				}
			} else {
				w.c.fails.succeeded(w.c.log, fetchKey)
				w.apply(s.instances)
				latest = s.latest
			}
		}
		hold := min(cfg.PollTimeout.D(), time.Until(nextFetch))
		if hold < minHold {
			wait(ctx, time.Until(nextFetch))
			continue
		}
		s, err := w.poll(ctx, latest, hold)
		switch {
		case err == nil:
			w.c.fails.succeeded(w.c.log, pollKey)
			w.apply(s.instances)
			latest = s.latest
		case errors.Is(err, ErrNotModified) || ctx.Err() != nil:
		default:
			w.c.fails.failed(w.c.log, pollKey, err)
			wait(ctx, min(retryDelay, time.Until(nextFetch)))
		}
	}
}

// wait returns after d or when ctx ends.
func wait(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// snapshot is the decoded state of one app.
type snapshot struct {
	instances []Instance // sorted
	latest    int64      // the app's latest_timestamp
}

// fetch gets the app's instances of every zone; an unknown app (-404) is
// an empty snapshot.
func (w *Watcher) fetch(ctx context.Context) (snapshot, error) {
	form := url.Values{"appid": {w.appID}, "env": {w.c.cfg.Env}, "status": {"1"}} // 1: up instances
	data, err := w.c.call(ctx, "fetch", w.appID, http.MethodGet, "/discovery/fetch", form, 0)
	if errors.Is(err, ErrNotFound) {
		return snapshot{}, nil
	} else if err != nil {
		return snapshot{}, err
	}
	s, err := decodeInstanceInfo(data)
	if err != nil {
		return snapshot{}, opError("fetch", w.appID, err)
	}
	return s, nil
}

// poll long-polls for a change after latest; the server answers at once
// if its latest_timestamp is newer, else at a change or after hold with
// -304 (an error matching ErrNotModified). Each request has a new poller
// id ("hostname"): the server files a pending poll under it and deletes
// the entry after answering, possibly after the next poll of the same id
// arrived, which would then miss the next change.
func (w *Watcher) poll(ctx context.Context, latest int64, hold time.Duration) (snapshot, error) {
	form := url.Values{
		"env":              {w.c.cfg.Env},
		"hostname":         {w.c.poller + "." + strconv.FormatUint(w.c.seq.Add(1), 10)},
		"appid":            {w.appID},
		"latest_timestamp": {strconv.FormatInt(latest, 10)},
	}
	data, err := w.c.call(ctx, "poll", w.appID, http.MethodGet, "/discovery/polls", form, hold)
	if err != nil {
		return snapshot{}, err
	}
	s, err := decodePolls(data, w.appID)
	if err != nil {
		return snapshot{}, opError("poll", w.appID, err)
	}
	return s, nil
}

// apply makes s the current snapshot and signals Changed if it differs.
func (w *Watcher) apply(s []Instance) {
	w.mu.Lock()
	first := !w.have
	diff := first || !slices.EqualFunc(w.snap, s, equalInstance)
	if diff {
		w.snap = s
	}
	w.have = true
	w.mu.Unlock()
	if first {
		close(w.ready)
	}
	if diff {
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
}

// instanceInfo is the server's model.InstanceInfo: instances by zone.
type instanceInfo struct {
	Instances       map[string][]Instance `json:"instances"`
	LatestTimestamp int64                 `json:"latest_timestamp"`
}

// decodeInstanceInfo decodes the data of a fetch answer.
func decodeInstanceInfo(data json.RawMessage) (snapshot, error) {
	var info instanceInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return snapshot{}, fmt.Errorf("bad instances %.100q: %w", data, err)
	}
	return flatten(info), nil
}

// decodePolls decodes the data of a polls answer, a map from app id to
// instanceInfo, and picks appID.
func decodePolls(data json.RawMessage, appID string) (snapshot, error) {
	var apps map[string]*instanceInfo
	if err := json.Unmarshal(data, &apps); err != nil {
		return snapshot{}, fmt.Errorf("bad poll data %.100q: %w", data, err)
	}
	info := apps[appID]
	if info == nil {
		return snapshot{}, fmt.Errorf("poll answer without app %s", appID)
	}
	return flatten(*info), nil
}

func flatten(info instanceInfo) snapshot {
	var out []Instance
	for _, zone := range info.Instances {
		out = append(out, zone...)
	}
	slices.SortFunc(out, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.Hostname, b.Hostname))
	})
	return snapshot{instances: out, latest: info.LatestTimestamp}
}

func equalInstance(a, b Instance) bool {
	return a.Region == b.Region && a.Zone == b.Zone && a.Env == b.Env && a.AppID == b.AppID &&
		a.Hostname == b.Hostname && a.Version == b.Version && a.LatestTimestamp == b.LatestTimestamp &&
		slices.Equal(a.Addrs, b.Addrs) && maps.Equal(a.Metadata, b.Metadata)
}
