package jitter

import (
	"testing"
	"time"
)

func TestSpreadBounds(t *testing.T) {
	d := 10 * time.Second
	lo, hi := d, d
	for range 10000 {
		got := Spread(d, 0.2)
		if got < 8*time.Second || got > 12*time.Second {
			t.Fatalf("Spread(10s, 0.2) = %v, outside [8s, 12s]", got)
		}
		lo, hi = min(lo, got), max(hi, got)
	}
	// 10,000 draws cover most of the range: a Spread that returned d
	// unchanged would fail here.
	if lo > 8500*time.Millisecond || hi < 11500*time.Millisecond {
		t.Fatalf("Spread(10s, 0.2) drew only [%v, %v]", lo, hi)
	}
}

func TestSpreadEdges(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		frac float64
		lo   time.Duration
		hi   time.Duration
	}{
		{0, 0.5, 0, 0},
		{-time.Second, 0.5, -time.Second, -time.Second},
		{time.Second, 0, time.Second, time.Second},
		{time.Second, -1, time.Second, time.Second},
		{time.Second, 5, 0, 2 * time.Second},
		{1, 0.1, 1, 1},
	} {
		for range 100 {
			if got := Spread(c.d, c.frac); got < c.lo || got > c.hi {
				t.Fatalf("Spread(%v, %v) = %v, outside [%v, %v]", c.d, c.frac, got, c.lo, c.hi)
			}
		}
	}
}
