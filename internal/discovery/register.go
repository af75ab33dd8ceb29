package discovery

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Registration is an instance registered by Client.Register and kept
// alive by a renew loop until Cancel or Client.Close.
type Registration struct {
	c    *Client
	ctx  context.Context // ends the renew loop and its requests
	stop context.CancelFunc
	done chan struct{} // closed when the renew loop has returned

	mu    sync.Mutex // serialises the requests; guards the fields below
	ins   Instance
	dirty bool // metadata not yet accepted by the server; renew retries it
	gone  bool // deregistered by Cancel
}

// Register registers ins now and then renews it every RenewInterval in a
// goroutine, registering it again when the server has forgotten it. Empty
// Region, Zone, Env and Hostname are taken from the Config; AppID and at
// least one address ("grpc://10.0.0.1:3109") are required. It fails if no
// node accepts the registration.
func (c *Client) Register(ctx context.Context, ins Instance) (*Registration, error) {
	ins = cloneInstance(ins)
	ins.Region = cmp.Or(ins.Region, c.cfg.Region)
	ins.Zone = cmp.Or(ins.Zone, c.cfg.Zone)
	ins.Env = cmp.Or(ins.Env, c.cfg.Env)
	ins.Hostname = cmp.Or(ins.Hostname, c.cfg.Host)
	if ins.AppID == "" || len(ins.Addrs) == 0 {
		return nil, opError("register", ins.AppID, errors.New("an instance needs an app id and at least one address"))
	}
	if err := c.reserve(); err != nil {
		return nil, opError("register", ins.AppID, err)
	}
	rctx, stop := context.WithCancel(c.ctx)
	r := &Registration{c: c, ctx: rctx, stop: stop, done: make(chan struct{}), ins: ins}
	r.mu.Lock()
	err := r.register(ctx)
	r.mu.Unlock()
	c.mu.Lock()
	closed := c.closed // Close ran meanwhile and did not see r
	if err == nil && !closed {
		c.regs[r] = struct{}{}
	}
	c.mu.Unlock()
	if err != nil || closed {
		close(r.done)
		c.wg.Done()
		if err == nil {
			_ = r.Cancel(ctx)
			err = opError("register", ins.AppID, ErrClosed)
		}
		stop()
		return nil, err
	}
	go r.renewLoop()
	return r, nil
}

// Set replaces the instance's metadata (e.g. conn_count, offline) by
// registering the instance again with it. It does not use discovery's
// /discovery/set: bilibili/discovery v1.2.0's set rewrites the metadata
// map of the stored instance in place while fetches copy that map without
// the lock (model.App.Set vs copyInstance), a concurrent map read and
// write that the race detector reports and that can crash the server. A
// register stores a new instance object instead, and it also replaces
// keys that were dropped (set merges). After a failure the renew loop
// retries until the server has the metadata.
func (r *Registration) Set(ctx context.Context, metadata map[string]string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone {
		return opError("set", r.ins.AppID, ErrCancelled)
	}
	r.ins.Metadata = maps.Clone(metadata)
	r.dirty = true
	return r.register(ctx)
}

// Cancel stops the renew loop and deregisters the instance; the server
// not knowing it counts as success. Once it succeeded, later calls return
// nil; after a failure a later call tries again.
func (r *Registration) Cancel(ctx context.Context) error {
	r.stop()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone {
		return nil
	}
	_, err := r.c.call(ctx, "cancel", r.ins.AppID, http.MethodPost, "/discovery/cancel", r.form(), 0)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	r.gone = true
	r.c.mu.Lock()
	delete(r.c.regs, r)
	r.c.mu.Unlock()
	return nil
}

func (r *Registration) renewLoop() {
	defer r.c.wg.Done()
	defer close(r.done)
	t := time.NewTicker(r.c.cfg.RenewInterval.D())
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			r.renew()
		}
	}
}

// renew renews the instance, registers it again if the server forgot it
// (evicted, or its node restarted), and retries a pending metadata set.
func (r *Registration) renew() {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.c.call(r.ctx, "renew", r.ins.AppID, http.MethodPost, "/discovery/renew", r.form(), 0)
	switch {
	case errors.Is(err, ErrNotFound):
		if err = r.register(r.ctx); err == nil {
			r.c.log.Info("discovery: instance was gone from the server; registered it again",
				"appid", r.ins.AppID, "hostname", r.ins.Hostname)
		}
	case err == nil && r.dirty:
		err = r.register(r.ctx)
	}
	key := "renew " + r.ins.AppID
	if err == nil {
		r.c.fails.succeeded(r.c.log, key)
	} else if r.ctx.Err() == nil {
		r.c.fails.failed(r.c.log, key, err)
	}
}

// form holds the parameters that name the instance.
func (r *Registration) form() url.Values {
	return url.Values{"region": {r.ins.Region}, "zone": {r.ins.Zone}, "env": {r.ins.Env},
		"appid": {r.ins.AppID}, "hostname": {r.ins.Hostname}}
}

// register sends the whole instance, replacing what the server has.
// r.mu must be held.
func (r *Registration) register(ctx context.Context) error {
	form := r.form()
	form["addrs"] = slices.Clone(r.ins.Addrs) // repeated; a comma would not split
	form.Set("version", r.ins.Version)
	form.Set("status", "1") // 1 up (receives traffic), 2 waiting
	if len(r.ins.Metadata) > 0 {
		md, err := json.Marshal(r.ins.Metadata)
		if err != nil {
			return opError("register", r.ins.AppID, err)
		}
		form.Set("metadata", string(md))
	}
	_, err := r.c.call(ctx, "register", r.ins.AppID, http.MethodPost, "/discovery/register", form, 0)
	if err == nil {
		r.dirty = false
	}
	return err
}

func cloneInstance(ins Instance) Instance {
	ins.Addrs = slices.Clone(ins.Addrs)
	ins.Metadata = maps.Clone(ins.Metadata)
	return ins
}
