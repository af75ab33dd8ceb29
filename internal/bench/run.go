// Package bench is goim-bench's engine: client connections that record
// every push they receive (conns), an HTTP pusher (push), and the
// accounting that decides, per room and per user, what was delivered,
// lost, duplicated or out of order. cmd/goim-bench is its command line;
// docs/benchmark.md has the figures it produced.
//
// Every load loop is bounded by a count and a duration, and targets are
// loopback unless a config allows remote ones. Nothing here prints: the
// progress line goes to an io.Writer, warnings to a *slog.Logger.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Output is where a run reports while it runs.
type Output struct {
	// Progress gets a line every second; nil for none.
	Progress io.Writer
	// Log gets warnings (the first error of each kind); nil discards.
	Log *slog.Logger
}

// RunConns opens the connections and holds them, recording, for hold
// (counted from the start, the dial phase included) or until ctx ends;
// then closes them and summarises. The summary carries the record merge
// needs.
func RunConns(ctx context.Context, cfg ConnsConfig, hold time.Duration, out Output) (*Summary, error) {
	if hold <= 0 || hold > maxDuration {
		return nil, fmt.Errorf("%w: -duration %v: want > 0 and <= %v", ErrUsage, hold, maxDuration)
	}
	c, err := NewConns(cfg, out.Log)
	if err != nil {
		return nil, err
	}
	if err := cfg.CheckTargets(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	ctx, cancel := context.WithDeadline(ctx, start.Add(hold))
	defer cancel()
	stop := startProgress(out.Progress, start, c, nil)
	c.Open(ctx)
	<-ctx.Done()
	c.Close()
	stop()
	rec := c.Record()
	s := &Summary{Version: SummaryVersion, Mode: "conns", Run: cfg.Run, Start: start.UnixNano(), Seconds: secondsSince(start.UnixNano()),
		Conns: summarizeConns([]*ConnsRecord{rec}), Delivery: receiveOnly([]*ConnsRecord{rec}), ConnsRecord: rec}
	if rec.End > rec.Start {
		s.Delivery.PerSecond = round1(float64(s.Delivery.Received) / (float64(rec.End-rec.Start) / 1e9))
	}
	s.judge()
	return s, nil
}

// RunPush sends pushes until the config's count or duration, or until ctx
// ends, and summarises. The summary carries the record merge needs.
func RunPush(ctx context.Context, cfg PushConfig, out Output) (*Summary, error) {
	p, err := NewPusher(cfg)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if err := cfg.CheckTargets(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	stop := startProgress(out.Progress, start, nil, p)
	p.Run(ctx)
	stop()
	rec := p.Record()
	s := &Summary{Version: SummaryVersion, Mode: "push", Run: cfg.Run, Start: start.UnixNano(), Seconds: secondsSince(start.UnixNano()),
		Push: summarizePush([]*PushRecord{rec}), PushRecord: rec}
	s.judge()
	return s, nil
}

// Run opens the connections, pushes, waits up to drain for what is still
// on its way (less when everything expected has arrived), closes the
// connections and judges delivery. Both configs must share a run id.
func Run(ctx context.Context, cc ConnsConfig, pc PushConfig, drain time.Duration, out Output) (*Summary, error) {
	if cc.Run != pc.Run {
		return nil, fmt.Errorf("%w: run ids differ: %q and %q", ErrUsage, cc.Run, pc.Run)
	}
	if drain < 0 || drain > maxDuration {
		return nil, fmt.Errorf("%w: -drain %v: want 0..%v", ErrUsage, drain, maxDuration)
	}
	c, err := NewConns(cc, out.Log)
	if err != nil {
		return nil, err
	}
	p, err := NewPusher(pc)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if err := cc.CheckTargets(ctx); err != nil {
		return nil, err
	}
	if err := pc.CheckTargets(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	stop := startProgress(out.Progress, start, c, p)
	defer stop()
	defer c.Close()
	c.Open(ctx)
	if c.alive.Load() > 0 && ctx.Err() == nil {
		p.Run(ctx)
	}
	prec := p.Record()
	// Drain: the run ends when every expected push has arrived, or when
	// drain has passed. Not cut short by ctx: it is bounded anyway, and
	// pushes still on their way would be counted lost.
	// The check (a snapshot of every connection's log) runs only when
	// something arrived since the last one.
	const tickEvery = 200 * time.Millisecond
	deadline := time.Now().Add(drain)
	tick := time.NewTicker(tickEvery)
	checked, lastChange := uint64(1<<64-1), time.Now()
	for time.Now().Before(deadline) {
		if n := c.delivered.Load(); n != checked {
			if checked != 1<<64-1 {
				lastChange = time.Now()
			}
			checked = n
			d, err := evaluate([]*PushRecord{prec}, []*ConnsRecord{c.Record()})
			if err != nil || d.Lost == 0 {
				break
			}
		}
		<-tick.C
	}
	tick.Stop()
	stillArriving := time.Since(lastChange) < 2*tickEvery
	c.Close()
	stop()
	crec := c.Record()
	d, err := evaluate([]*PushRecord{prec}, []*ConnsRecord{crec})
	if err != nil {
		return nil, err
	}
	d.StillArriving = stillArriving && d.Lost > 0
	s := &Summary{Version: SummaryVersion, Mode: "run", Run: cc.Run, Start: start.UnixNano(), Seconds: secondsSince(start.UnixNano()),
		Conns: summarizeConns([]*ConnsRecord{crec}), Push: summarizePush([]*PushRecord{prec}), Delivery: d}
	if s.Push.Seconds > 0 {
		d.PerSecond = round1(float64(d.Received) / s.Push.Seconds)
	}
	s.judge()
	return s, nil
}

// Merge combines the summaries of conns and push processes of one run
// (their records) into one: delivery is judged when there is a push
// record, otherwise only what the connections saw is summarised.
func Merge(in []*Summary) (*Summary, error) {
	var conns []*ConnsRecord
	var pushes []*PushRecord
	run := ""
	for i, s := range in {
		if s.ConnsRecord == nil && s.PushRecord == nil {
			return nil, fmt.Errorf("input %d (%s summary) carries no record: merge reads conns and push summaries", i+1, s.Mode)
		}
		var runs []string
		if s.ConnsRecord != nil {
			runs = append(runs, s.ConnsRecord.Run)
		}
		if s.PushRecord != nil {
			runs = append(runs, s.PushRecord.Run)
		}
		for _, r := range runs {
			switch {
			case r == "":
			case run == "":
				run = r
			case r != run:
				return nil, fmt.Errorf("input %d is of run %q, the others of %q", i+1, r, run)
			}
		}
		if s.ConnsRecord != nil {
			conns = append(conns, s.ConnsRecord)
		}
		if s.PushRecord != nil {
			pushes = append(pushes, s.PushRecord)
		}
	}
	out := &Summary{Version: SummaryVersion, Mode: "merge", Run: run}
	var first, last int64
	span := func(a, b int64) {
		if a > 0 && (first == 0 || a < first) {
			first = a
		}
		last = max(last, b)
	}
	for _, r := range conns {
		span(r.Start, r.End)
	}
	for _, r := range pushes {
		span(r.Start, r.End)
	}
	out.Start = first
	if last > first {
		out.Seconds = round3(float64(last-first) / 1e9)
	}
	if len(conns) > 0 {
		out.Conns = summarizeConns(conns)
	}
	if len(pushes) > 0 {
		out.Push = summarizePush(pushes)
	}
	switch {
	case len(conns) > 0 && len(pushes) > 0:
		d, err := evaluate(pushes, conns)
		if err != nil {
			return nil, err
		}
		if out.Push.Seconds > 0 {
			d.PerSecond = round1(float64(d.Received) / out.Push.Seconds)
		}
		out.Delivery = d
	case len(conns) > 0:
		out.Delivery = receiveOnly(conns)
	}
	out.judge()
	return out, nil
}

// startProgress writes a progress line every second until the returned
// stop is called (idempotent; it waits for the writer to finish).
func startProgress(w io.Writer, start time.Time, c *Conns, p *Pusher) (stop func()) {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var prevC connsProgress
		var prevP pushProgress
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				var b strings.Builder
				fmt.Fprintf(&b, "%4.0fs", now.Sub(start).Seconds())
				if c != nil {
					cp := c.progress()
					fmt.Fprintf(&b, " | conns %d up, %d failed, %d dropped", cp.alive, cp.failed, cp.dropped)
					if c.cfg.Reconnect {
						fmt.Fprintf(&b, ", %d reconnected", cp.reconnected)
					}
					if c.cfg.N > cp.opened+int(cp.failed) {
						fmt.Fprintf(&b, " (%d/%d tried)", cp.opened+int(cp.failed), c.cfg.N)
					}
					lat := cp.latency.Since(prevC.latency)
					fmt.Fprintf(&b, " | recv %d (%d/s) p50 %s p99 %s", cp.delivered, cp.delivered-prevC.delivered,
						fmtDur(lat.Quantile(0.5)), fmtDur(lat.Quantile(0.99)))
					if cp.foreign > 0 {
						fmt.Fprintf(&b, ", %d foreign", cp.foreign)
					}
					prevC = cp
				}
				if p != nil {
					pp := p.progress()
					lat := pp.latency.Since(prevP.latency)
					fmt.Fprintf(&b, " | push %d sent (%d/s), %d accepted, %d failed, %d behind, http p50 %s p99 %s",
						pp.sent, pp.sent-prevP.sent, pp.accepted, pp.failed, pp.behind,
						fmtDur(lat.Quantile(0.5)), fmtDur(lat.Quantile(0.99)))
					prevP = pp
				}
				b.WriteByte('\n')
				_, _ = io.WriteString(w, b.String())
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}
