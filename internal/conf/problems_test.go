package conf_test

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/goim/goim/internal/conf"
)

func TestProblemsNone(t *testing.T) {
	var p conf.Problems
	if !p.Check(true, "tcp.bind", "never reported") {
		t.Error("Check(true, ...) = false")
	}
	p.Sub("tcp").Check(true, "sndbuf", "never reported")
	if err := p.Err(); err != nil {
		t.Errorf("Err() = %v, want nil", err)
	}
}

func TestProblemsSeveral(t *testing.T) {
	tests := []struct {
		name  string
		fill  func(p *conf.Problems)
		wants []string
	}{
		{
			name: "flat paths with Add, Check and Index",
			fill: func(p *conf.Problems) {
				p.Add("name", "must not be empty")
				p.Check(false, conf.Index("tcp.bind", 1), "bad address %q", "x:y:z")
				p.Check(true, "tcp.sndbuf", "never reported")
				p.Add("tcp.handshake", "must be > 0, got %v", "-1s")
			},
			wants: []string{
				"name: must not be empty",
				`tcp.bind[1]: bad address "x:y:z"`,
				"tcp.handshake: must be > 0, got -1s",
			},
		},
		{
			name: "sections and indexed sections share the collector, in order",
			fill: func(p *conf.Problems) {
				tcp := p.Sub("tcp")
				tcp.Add(conf.Index("bind", 0), "empty")
				p.Add("workers", "must be > 0")
				up := p.Sub(conf.Index("upstream", 2))
				up.Add("timeout", "negative")
				up.Sub("tls").Add("cert", "missing")
				tcp.Add("", "section-level problem")
				p.Sub("ws").Sub("bind").Add("[3]", "empty")
			},
			wants: []string{
				"tcp.bind[0]: empty",
				"workers: must be > 0",
				"upstream[2].timeout: negative",
				"upstream[2].tls.cert: missing",
				"tcp: section-level problem",
				"ws.bind[3]: empty",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p conf.Problems
			tt.fill(&p)
			err := p.Err()
			if err == nil {
				t.Fatal("Err() = nil, want problems")
			}
			if !errors.Is(err, conf.ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("Err() = %T, want an errors.Join result", err)
			}
			got := joined.Unwrap()
			if len(got) != len(tt.wants) {
				t.Fatalf("got %d problems, want %d:\n%v", len(got), len(tt.wants), err)
			}
			for i, want := range tt.wants {
				if got[i].Error() != want {
					t.Errorf("problem %d = %q, want %q", i, got[i], want)
				}
				if !errors.Is(got[i], conf.ErrInvalid) {
					t.Errorf("problem %d %q does not wrap ErrInvalid", i, got[i])
				}
			}
		})
	}
}

func TestProblemsWrap(t *testing.T) {
	var p conf.Problems
	p.Add("tls.cert", "cannot read: %w", fs.ErrNotExist)
	err := p.Err()
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("err %v wraps fs.ErrNotExist: %v, ErrInvalid: %v; want both",
			err, errors.Is(err, fs.ErrNotExist), errors.Is(err, conf.ErrInvalid))
	}
	if want := "tls.cert: cannot read: file does not exist"; err.Error() != want {
		t.Errorf("message = %q, want %q", err, want)
	}
}
