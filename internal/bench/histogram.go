package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram records durations (ns) in log-linear buckets, HDR-style:
// values below 256 ns have a bucket each, and every octave above is split
// into 128 equal buckets, so a quantile is off by at most 1/128 (0.8 %) of
// the value. Values from 2^44 ns (about 4.9 h) on share the last bucket;
// the exact max is kept apart.
//
// Why this and not sorted samples: memory is fixed (4,864 counters, 38
// KiB) however many million deliveries a run records; recording is one
// atomic add, so thousands of connection readers share one histogram
// without a lock; two histograms merge by adding counters, which is what
// merging the summaries of several client processes needs; and the
// progress line gets the last second's quantiles by subtracting two
// snapshots. Sorted samples would need either all samples (memory grows
// with the run) or a reservoir (quantiles above p99.9 become guesses).
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64 // ns; wraps only after 584 years of latency
	min    atomic.Int64  // math.MaxInt64 when empty
	max    atomic.Int64
}

const (
	histSubBits  = 8
	histSub      = 1 << histSubBits // values below this have a bucket each
	histHalf     = histSub / 2      // buckets per octave above
	histMaxShift = 36               // values >= 2^(36+8) ns share the last bucket
	histBuckets  = histSub + histMaxShift*histHalf
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	h := new(Histogram)
	h.min.Store(math.MaxInt64)
	return h
}

// bucketOf is the bucket of value v (ns; negative counts as 0).
func bucketOf(v int64) int {
	if v < histSub {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - histSubBits
	if shift > histMaxShift {
		return histBuckets - 1
	}
	m := int(uint64(v) >> shift) // histHalf <= m < histSub
	return histSub + (shift-1)*histHalf + m - histHalf
}

// bucketHigh is the largest value that falls in bucket i.
func bucketHigh(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	j := i - histSub
	shift := j/histHalf + 1
	m := j%histHalf + histHalf
	return int64(uint64(m+1)<<shift) - 1
}

// Record adds one value (ns). Safe for concurrent use.
func (h *Histogram) Record(v int64) {
	v = max(v, 0)
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(uint64(v))
	for cur := h.min.Load(); v < cur && !h.min.CompareAndSwap(cur, v); cur = h.min.Load() {
	}
	for cur := h.max.Load(); v > cur && !h.max.CompareAndSwap(cur, v); cur = h.max.Load() {
	}
}

// RecordAll adds values (ns): per value one add to its bucket, and one
// update of the count, sum, min and max for all of them. Safe for
// concurrent use.
func (h *Histogram) RecordAll(vs []int64) {
	if len(vs) == 0 {
		return
	}
	lo, hi := int64(math.MaxInt64), int64(0)
	var sum uint64
	for _, v := range vs {
		v = max(v, 0)
		h.counts[bucketOf(v)].Add(1)
		sum += uint64(v)
		lo, hi = min(lo, v), max(hi, v)
	}
	h.n.Add(uint64(len(vs)))
	h.sum.Add(sum)
	for cur := h.min.Load(); lo < cur && !h.min.CompareAndSwap(cur, lo); cur = h.min.Load() {
	}
	for cur := h.max.Load(); hi > cur && !h.max.CompareAndSwap(cur, hi); cur = h.max.Load() {
	}
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Snapshot copies the histogram. Values recorded meanwhile may be partly
// in it (a count without its max, say); that only blurs the progress line.
func (h *Histogram) Snapshot() *HistData {
	d := &HistData{N: h.n.Load(), Sum: h.sum.Load(), Min: h.min.Load(), Max: h.max.Load()}
	if d.N == 0 {
		d.Min, d.Max = 0, 0
		return d
	}
	d.counts = make([]uint64, histBuckets)
	for i := range d.counts {
		d.counts[i] = h.counts[i].Load()
	}
	return d
}

// HistData is a histogram's plain copy: what summaries hold, merge and
// write as JSON (buckets sparse, as [index, count] pairs).
type HistData struct {
	N      uint64
	Sum    uint64
	Min    int64
	Max    int64
	counts []uint64 // histBuckets long, or nil when N == 0
}

// Merge adds o to d.
func (d *HistData) Merge(o *HistData) {
	if o == nil || o.N == 0 {
		return
	}
	if d.N == 0 {
		d.Min, d.Max = o.Min, o.Max
	} else {
		d.Min, d.Max = min(d.Min, o.Min), max(d.Max, o.Max)
	}
	d.N += o.N
	d.Sum += o.Sum
	if d.counts == nil {
		d.counts = make([]uint64, histBuckets)
	}
	for i, c := range o.counts {
		d.counts[i] += c
	}
}

// Since returns what was recorded between prev and d (both snapshots of
// one histogram, prev the older). Min and Max of the result are bucket
// bounds, capped by d's exact extremes.
func (d *HistData) Since(prev *HistData) *HistData {
	if prev == nil || prev.N == 0 {
		return d
	}
	out := &HistData{N: d.N - prev.N, Sum: d.Sum - prev.Sum}
	if out.N == 0 || d.counts == nil {
		return &HistData{}
	}
	out.counts = make([]uint64, histBuckets)
	lo, hi := -1, -1
	for i := range out.counts {
		out.counts[i] = d.counts[i] - prev.counts[i]
		if out.counts[i] > 0 {
			if lo < 0 {
				lo = i
			}
			hi = i
		}
	}
	if lo < 0 {
		return &HistData{}
	}
	out.Min = max(bucketHigh(lo-1)+1, d.Min) // bucketHigh(-1) is -1
	out.Max = min(bucketHigh(hi), d.Max)
	return out
}

// Quantile returns the value at quantile q (0..1): the upper bound of the
// bucket holding the ceil(q·N)-th smallest value, capped by the exact max.
// It is 0 for an empty histogram.
func (d *HistData) Quantile(q float64) int64 {
	if d.N == 0 || d.counts == nil {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(d.N)))
	rank = min(max(rank, 1), d.N)
	var seen uint64
	for i, c := range d.counts {
		seen += c
		if seen >= rank {
			return min(max(bucketHigh(i), d.Min), d.Max)
		}
	}
	return d.Max
}

// Mean is the average value, 0 when empty.
func (d *HistData) Mean() float64 {
	if d.N == 0 {
		return 0
	}
	return float64(d.Sum) / float64(d.N)
}

// Quantiles is a histogram as a summary shows it, in milliseconds.
type Quantiles struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean"`
	Min   float64 `json:"min"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// Quantiles summarises d in milliseconds (microsecond precision).
func (d *HistData) Quantiles() Quantiles {
	if d == nil {
		return Quantiles{}
	}
	return Quantiles{
		Count: d.N,
		Mean:  ms(int64(d.Mean())),
		Min:   ms(d.Min),
		P50:   ms(d.Quantile(0.50)),
		P90:   ms(d.Quantile(0.90)),
		P99:   ms(d.Quantile(0.99)),
		P999:  ms(d.Quantile(0.999)),
		Max:   ms(d.Max),
	}
}

// ms converts ns to milliseconds rounded to the microsecond.
func ms(ns int64) float64 {
	return math.Round(float64(ns)/1e3) / 1e3
}

// fmtDur prints ns compactly for the progress line and the text summary.
func fmtDur(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

type histJSON struct {
	N       uint64      `json:"n"`
	Sum     uint64      `json:"sum_ns"`
	Min     int64       `json:"min_ns"`
	Max     int64       `json:"max_ns"`
	SubBits int         `json:"sub_bits"`
	Buckets [][2]uint64 `json:"buckets"` // [bucket index, count], non-empty buckets only
}

// MarshalJSON writes the histogram with its non-empty buckets.
func (d HistData) MarshalJSON() ([]byte, error) {
	j := histJSON{N: d.N, Sum: d.Sum, Min: d.Min, Max: d.Max, SubBits: histSubBits, Buckets: [][2]uint64{}}
	for i, c := range d.counts {
		if c > 0 {
			j.Buckets = append(j.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote, checking the bucket layout
// and that the counts add up.
func (d *HistData) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.SubBits != histSubBits && !(j.SubBits == 0 && j.N == 0) {
		return fmt.Errorf("histogram with sub_bits %d, want %d", j.SubBits, histSubBits)
	}
	*d = HistData{N: j.N, Sum: j.Sum, Min: j.Min, Max: j.Max}
	if j.N == 0 {
		return nil
	}
	d.counts = make([]uint64, histBuckets)
	var total uint64
	for _, b := range j.Buckets {
		if b[0] >= histBuckets {
			return fmt.Errorf("histogram bucket %d out of range", b[0])
		}
		d.counts[b[0]] += b[1]
		total += b[1]
	}
	if total != j.N {
		return fmt.Errorf("histogram buckets hold %d values, n is %d", total, j.N)
	}
	return nil
}
