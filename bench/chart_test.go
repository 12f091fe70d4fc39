package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// svgSeries parses an SVG document and returns, for each <g
// class="series">, its data-kind and data-client, and the number of
// legend entries. It fails the test if the document is not well-formed XML
// with an <svg> root.
func svgSeries(t *testing.T, doc []byte) (series []string, legend []string) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, doc)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Local
			if se.Name.Space != "http://www.w3.org/2000/svg" {
				t.Errorf("root namespace %q", se.Name.Space)
			}
		}
		attr := map[string]string{}
		for _, a := range se.Attr {
			attr[a.Name.Local] = a.Value
		}
		if se.Name.Local == "g" && attr["class"] == "series" {
			series = append(series, attr["data-kind"]+":"+attr["data-client"])
		}
		if se.Name.Local == "g" && attr["class"] == "legend" {
			legend = append(legend, attr["data-client"])
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q", root)
	}
	return series, legend
}

func TestChartWritesOneSeriesPerClient(t *testing.T) {
	c := Chart{
		Title: "Outage & <friends>", Subtitle: "line one\nline two", Bucket: SeriesBucket,
		Lines: []Line{
			{Client: Bare, Requests: []int{5, 5, 5}},
			{Client: Payretry, Requests: []int{5, 1, 40}},
			{Client: Retryablehttp, Requests: []int{8, 19, 20}, Throttled: []int{0, 3, 0}},
		},
		Bands: []Band{{From: 0, To: 200 * time.Millisecond, Label: "down"}},
	}
	var b bytes.Buffer
	if err := c.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	series, legend := svgSeries(t, b.Bytes())
	want := []string{ // peers first, payretry on top, in each panel
		"requests:bare", "requests:retryablehttp", "requests:payretry",
		"429s:bare", "429s:retryablehttp", "429s:payretry",
	}
	if strings.Join(series, " ") != strings.Join(want, " ") {
		t.Errorf("series %q, want %q", series, want)
	}
	if strings.Join(legend, " ") != "bare payretry retryablehttp" {
		t.Errorf("legend %q", legend)
	}
	doc := b.String()
	for _, s := range []string{"Outage &amp; &lt;friends&gt;", ">line two<", "requests per 100 ms", "429s per 100 ms",
		"time since the run started (s)", `class="band"`, ">down<", chartColor(Payretry), chartColor(Retryablehttp)} {
		if !strings.Contains(doc, s) {
			t.Errorf("the SVG lacks %q", s)
		}
	}

	// Without 429s, no second panel.
	c.Lines[2].Throttled = nil
	b.Reset()
	if err := c.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	series, _ = svgSeries(t, b.Bytes())
	if len(series) != 3 || strings.Contains(b.String(), "429s per") {
		t.Errorf("without 429s: series %q", series)
	}
}

func TestChartScale(t *testing.T) {
	for _, tc := range []struct{ v, want float64 }{{0, 1}, {1, 1}, {3, 5}, {19, 20}, {21, 25}, {123, 200}, {600, 1000}} {
		if got := niceCeil(tc.v); got != tc.want {
			t.Errorf("niceCeil(%v) = %v, want %v", tc.v, got, tc.want)
		}
	}
	for _, tc := range []struct {
		span float64
		n    int
		want float64
	}{{6, 10, 1}, {9.9, 10, 1}, {15, 10, 2}, {200, 5, 50}, {25, 5, 5}} {
		if got := niceStep(tc.span, tc.n); got != tc.want {
			t.Errorf("niceStep(%v, %d) = %v, want %v", tc.span, tc.n, got, tc.want)
		}
	}
}

// The outage chart draws what the provider received per 100 ms, one line
// per client, with the outage shaded; the goodput chart leaves bare out.
func TestScenarioCharts(t *testing.T) {
	tl := newTimeline(SeriesBucket)
	t0 := time.Now()
	tl.begin(t0)
	tl.add(t0.Add(-time.Millisecond), false) // before the start: bucket 0
	tl.add(t0.Add(50*time.Millisecond), true)
	tl.add(t0.Add(250*time.Millisecond), false)
	tl.add(t0.Add(time.Hour), false) // past maxBuckets: not counted
	s := tl.series()
	if got, want := s.Requests, []int{2, 0, 1}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	if got, want := s.Throttled, []int{1, 0, 0}; !slices.Equal(got, want) {
		t.Fatalf("429s %v, want %v", got, want)
	}
	rows := []Row{{Client: Bare, Series: s}, {Client: Payretry, Series: s}, {Client: Failsafe, Series: s}, {Client: Retryablehttp}}
	oc := OutageChart(DefaultOutage(), rows)
	if len(oc.Lines) != 3 || len(oc.Bands) != 1 || oc.Bands[0].To != 3*time.Second {
		t.Errorf("outage chart: %d lines, bands %v", len(oc.Lines), oc.Bands)
	}
	gc := GoodputChart(DefaultGoodput(), rows)
	if len(gc.Lines) != 2 || gc.Lines[0].Client != Payretry {
		t.Errorf("goodput chart lines %v", gc.Lines)
	}
}
