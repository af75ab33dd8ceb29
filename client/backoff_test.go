package client

import (
	"math"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: time.Second, Max: 10 * time.Second, Factor: 2, Jitter: 0.5}
	cases := []struct {
		b    Backoff
		n    int
		r    float64
		want time.Duration
	}{
		{b, 0, 0.5, time.Second},
		{b, 1, 0.5, 2 * time.Second},
		{b, 3, 0.5, 8 * time.Second},
		{b, 4, 0.5, 10 * time.Second}, // capped at Max
		{b, 1000, 0.5, 10 * time.Second},
		{b, -3, 0.5, time.Second}, // a negative attempt is the first
		{b, 0, 0, 500 * time.Millisecond},
		{b, 4, 0, 5 * time.Second},
		{b, 0, 1, 1500 * time.Millisecond},
		{b, 0, 7, 1500 * time.Millisecond},                // r clamped
		{b, 0, math.NaN(), 500 * time.Millisecond},        // NaN r is 0
		{DefaultBackoff, 0, 0.5, 3 * time.Second},         // logic's default
		{DefaultBackoff, 1, 0.5, 5400 * time.Millisecond}, // × 1.8
		{DefaultBackoff, 20, 0.5, 300 * time.Second},      // max_delay
		{Backoff{}, 5, 0.3, 0},                            // zero value: no wait
		{Backoff{Base: -1, Max: -1, Factor: math.NaN(), Jitter: -1}, 2, 0, 3 * time.Second},                        // defaults, factor 1, no jitter
		{Backoff{Base: 48 * time.Hour, Max: time.Second, Factor: math.Inf(1), Jitter: 5}, 0, 0, 0},                 // jitter clamped to 1
		{Backoff{Base: 48 * time.Hour, Max: time.Second, Factor: math.Inf(1), Jitter: 5}, 0, 0.5, 3 * time.Second}, // Base over a day, Max raised to Base
	}
	for i, tc := range cases {
		if got := tc.b.Delay(tc.n, tc.r); got != tc.want {
			t.Errorf("%d: %+v.Delay(%d, %v) = %v, want %v", i, tc.b, tc.n, tc.r, got, tc.want)
		}
	}
}

func TestBackoffNormalize(t *testing.T) {
	got := Backoff{Base: 5 * time.Second, Max: time.Second, Factor: 0.5, Jitter: math.NaN()}.Normalize()
	if want := (Backoff{Base: 5 * time.Second, Max: 5 * time.Second, Factor: 1, Jitter: 0}); got != want {
		t.Fatalf("normalized %+v, want %+v", got, want)
	}
	if got := DefaultBackoff.Normalize(); got != DefaultBackoff {
		t.Fatalf("DefaultBackoff changed by Normalize: %+v", got)
	}
}
