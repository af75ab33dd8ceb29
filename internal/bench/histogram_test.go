package bench

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

func TestBucketBounds(t *testing.T) {
	// Every value lies in its bucket: above the previous bucket's high,
	// at most its own, within 1/128 of the value.
	values := []int64{0, 1, 255, 256, 257, 258, 511, 512, 1000, 123456, 1e9, 1<<44 - 1}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		values = append(values, r.Int64N(1<<44))
	}
	for _, v := range values {
		i := bucketOf(v)
		hi := bucketHigh(i)
		if v > hi || (i > 0 && v <= bucketHigh(i-1)) {
			t.Fatalf("value %d in bucket %d [%d, %d]", v, i, bucketHigh(i-1)+1, hi)
		}
		if float64(hi-v) > float64(v)/128+1 {
			t.Fatalf("value %d: bucket high %d is off by more than 1/128", v, hi)
		}
	}
	if bucketOf(-5) != 0 || bucketOf(1<<62) != histBuckets-1 || bucketOf(math.MaxInt64) != histBuckets-1 {
		t.Fatal("out-of-range values are not clamped to the end buckets")
	}
	for i := 1; i < histBuckets; i++ {
		if bucketHigh(i) <= bucketHigh(i-1) || bucketOf(bucketHigh(i)) != i || bucketOf(bucketHigh(i-1)+1) != i {
			t.Fatalf("bucket %d is not contiguous with bucket %d", i, i-1)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	cases := []struct {
		name   string
		values func() []int64
	}{
		{name: "uniform 1us to 10ms", values: func() []int64 {
			r := rand.New(rand.NewPCG(3, 4))
			v := make([]int64, 100000)
			for i := range v {
				v[i] = 1000 + r.Int64N(10_000_000)
			}
			return v
		}},
		{name: "long tail", values: func() []int64 {
			r := rand.New(rand.NewPCG(5, 6))
			v := make([]int64, 100000)
			for i := range v {
				v[i] = int64(r.ExpFloat64() * 2e6)
			}
			v[7] = 3e9 // one outlier of 3 s
			return v
		}},
		{name: "one value", values: func() []int64 { return []int64{4242} }},
		{name: "small exact values", values: func() []int64 { return []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vals := tc.values()
			h := NewHistogram()
			for _, v := range vals {
				h.Record(v)
			}
			d := h.Snapshot()
			sorted := slices.Clone(vals)
			slices.Sort(sorted)
			if d.N != uint64(len(vals)) || d.Min != sorted[0] || d.Max != sorted[len(sorted)-1] {
				t.Fatalf("n %d min %d max %d, want %d %d %d", d.N, d.Min, d.Max, len(vals), sorted[0], sorted[len(sorted)-1])
			}
			for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
				rank := max(int(math.Ceil(q*float64(len(sorted)))), 1)
				exact := sorted[rank-1]
				got := d.Quantile(q)
				if got < exact || float64(got-exact) > float64(exact)/128+1 {
					t.Errorf("q%v = %d, exact %d", q, got, exact)
				}
			}
		})
	}
	if q := (&HistData{}).Quantile(0.5); q != 0 {
		t.Fatalf("empty histogram: p50 %d", q)
	}
}

func TestHistogramMergeSinceJSON(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	for v := int64(1); v <= 1000; v++ {
		a.Record(v * 1000)
		b.Record(v * 1000)
	}
	first := a.Snapshot()
	for v := int64(1); v <= 100; v++ {
		a.Record(5e6 + v)
	}
	second := a.Snapshot()

	since := second.Since(first)
	if since.N != 100 || since.Quantile(0) < 5e6 || since.Max != second.Max {
		t.Fatalf("since: n %d min-quantile %d max %d", since.N, since.Quantile(0), since.Max)
	}
	if got := second.Since(second); got.N != 0 || got.Quantile(0.5) != 0 {
		t.Fatalf("nothing since: %+v", got)
	}

	m := &HistData{}
	m.Merge(second)
	m.Merge(b.Snapshot())
	if m.N != 2100 || m.Min != 1000 || m.Max != 5e6+100 {
		t.Fatalf("merged n %d min %d max %d", m.N, m.Min, m.Max)
	}
	if p := m.Quantile(0.5); p < 525_000 || p > 525_000+525_000/128 { // rank 1050: the 525th value, twice
		t.Fatalf("merged p50 %d", p)
	}

	j, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back HistData
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	if back.N != m.N || back.Sum != m.Sum || back.Min != m.Min || back.Max != m.Max || !slices.Equal(back.counts, m.counts) {
		t.Fatal("JSON round trip changed the histogram")
	}
	for name, bad := range map[string]string{
		"counts do not add up": `{"n":3,"sub_bits":8,"buckets":[[1,2]]}`,
		"bucket out of range":  `{"n":1,"sub_bits":8,"buckets":[[99999,1]]}`,
		"other layout":         `{"n":1,"sub_bits":7,"buckets":[[1,1]]}`,
	} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	var empty HistData
	if err := json.Unmarshal([]byte(`{"n":0,"buckets":[]}`), &empty); err != nil || empty.N != 0 {
		t.Fatalf("empty: %v", err)
	}
}

func TestHistogramConcurrent(t *testing.T) {
	h := NewHistogram()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10000 {
				h.Record(int64(g*10000 + i))
			}
		})
	}
	wg.Wait()
	d := h.Snapshot()
	if d.N != 80000 || d.Min != 0 || d.Max != 79999 {
		t.Fatalf("n %d min %d max %d", d.N, d.Min, d.Max)
	}
}

// TestRecordAll: recording values together is recording them one by one.
func TestRecordAll(t *testing.T) {
	vs := []int64{-5, 0, 1, 255, 256, 1000, 123456, 1 << 40, 1 << 50}
	one, all := NewHistogram(), NewHistogram()
	for _, v := range vs {
		one.Record(v)
	}
	all.RecordAll(vs[:4])
	all.RecordAll(nil)
	all.RecordAll(vs[4:])
	a, b := one.Snapshot(), all.Snapshot()
	if a.N != b.N || a.Sum != b.Sum || a.Min != b.Min || a.Max != b.Max || !slices.Equal(a.counts, b.counts) {
		t.Fatalf("one by one %+v, together %+v", a, b)
	}
}
