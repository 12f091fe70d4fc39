package bench

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// SeriesBucket is the width of a Series bucket in the charts.
const SeriesBucket = 100 * time.Millisecond

// Series is what a provider received over a run, per Bucket from the run's
// start: requests, and how many of them it answered 429.
type Series struct {
	Bucket    time.Duration
	Requests  []int
	Throttled []int
}

// maxBuckets bounds a Series: requests later than that many buckets after
// the start are not counted.
const maxBuckets = 6000

// timeline records a Series as requests arrive. Safe for concurrent use.
type timeline struct {
	mu    sync.Mutex
	start time.Time
	s     Series
}

// newTimeline returns a timeline whose bucket 0 starts now.
func newTimeline(bucket time.Duration) *timeline {
	return &timeline{start: time.Now(), s: Series{Bucket: bucket}}
}

// begin sets the instant bucket 0 starts; requests before it count in
// bucket 0.
func (t *timeline) begin(start time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.start = start
}

// add counts a request that arrived at now.
func (t *timeline) add(now time.Time, throttled bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := max(0, int(now.Sub(t.start)/t.s.Bucket))
	if i >= maxBuckets {
		return
	}
	for len(t.s.Requests) <= i {
		t.s.Requests = append(t.s.Requests, 0)
		t.s.Throttled = append(t.s.Throttled, 0)
	}
	t.s.Requests[i]++
	if throttled {
		t.s.Throttled[i]++
	}
}

// series returns a copy of what was recorded.
func (t *timeline) series() *Series {
	t.mu.Lock()
	defer t.mu.Unlock()
	return &Series{Bucket: t.s.Bucket, Requests: slices.Clone(t.s.Requests), Throttled: slices.Clone(t.s.Throttled)}
}

// OutageChart is the chart of an outage run: requests per bucket at the
// provider for each client in rows (one run), with the outage shaded.
func OutageChart(cfg OutageConfig, rows []Row) Chart {
	return Chart{
		Title: "Outage: requests the provider receives",
		Subtitle: fmt.Sprintf("%d payments/s arrive for %s, each with a %s deadline; the provider answers 503 to everything for\n"+
			"the first %s. Requests per 100 ms at the provider, one run.",
			cfg.Rate, seconds(cfg.Duration), seconds(cfg.PaymentTimeout), seconds(cfg.Outage)),
		Bucket: SeriesBucket,
		Lines:  chartLines(rows, nil),
		Bands:  []Band{{From: 0, To: cfg.Outage, Label: "provider down: 503 to everything"}},
	}
}

// GoodputChart is the chart of a goodput run: requests and 429s per bucket
// at the provider for each client in rows (one run) but bare, which sends
// everything in the first 100 ms and would flatten the others.
func GoodputChart(cfg GoodputConfig, rows []Row) Chart {
	return Chart{
		Title: "Under a rate limit: requests and 429s the provider receives",
		Subtitle: fmt.Sprintf("%d workers push %d payments; the provider allows %d requests per second in windows aligned to\n"+
			"the second and answers 429 beyond. One run. Not shown: bare (no retries) sends all %d in the first 100 ms.",
			cfg.Workers, cfg.Payments, cfg.Limit, cfg.Payments),
		Bucket: SeriesBucket,
		Lines:  chartLines(rows, []string{Bare}),
	}
}

// chartLines turns rows with a Series into lines, in row order, leaving out
// the clients in skip.
func chartLines(rows []Row, skip []string) []Line {
	var lines []Line
	for _, r := range rows {
		if r.Series == nil || slices.Contains(skip, r.Client) {
			continue
		}
		lines = append(lines, Line{Client: r.Client, Requests: r.Series.Requests, Throttled: r.Series.Throttled})
	}
	return lines
}

// seconds prints d in seconds: "6 s", "0.5 s".
func seconds(d time.Duration) string { return trimFloat(d.Seconds()) + " s" }
