package bench

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// Chart is a line chart of counts per time bucket, one line per client,
// written by hand as a self-contained SVG (WriteSVG): requests per bucket
// in the main panel and, when any line has some, 429s per bucket in a
// second panel under it, on the same time axis.
type Chart struct {
	Title    string
	Subtitle string // "\n" breaks it into lines
	Bucket   time.Duration
	Lines    []Line
	Bands    []Band // shaded periods of the main panel, such as an outage
}

// Line is one client's series.
type Line struct {
	Client    string
	Requests  []int // per bucket
	Throttled []int // 429s per bucket; nil for none
}

// Band shades [From, To) of the time axis, with a label.
type Band struct {
	From, To time.Duration
	Label    string
}

// Colors per client: the Okabe-Ito palette, which colour-blind readers
// tell apart; payretry is blue and drawn last, on top.
var chartColors = map[string]string{
	Payretry:      "#0072B2",
	PayretrySmart: "#56B4E9",
	PayretryORZ:   "#CC79A7",
	Retryablehttp: "#E69F00",
	Failsafe:      "#009E73",
	Naive:         "#D55E00",
	Bare:          "#777777",
}

func chartColor(client string) string {
	if c, ok := chartColors[client]; ok {
		return c
	}
	return "#000000"
}

// Layout, in SVG user units.
const (
	chartWidth   = 760
	chartLeft    = 64 // room for the y labels
	chartRight   = 20
	chartMain    = 250
	chartGap     = 46
	chartSecond  = 100
	chartBottom  = 78 // x labels, axis title, legend
	chartPlotW   = chartWidth - chartLeft - chartRight
	chartFontCSS = "font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif"
)

// WriteSVG writes c as an SVG document.
func (c Chart) WriteSVG(w io.Writer) error {
	bw := bufio.NewWriter(w)
	n := 0
	maxReq, max429 := 0, 0
	for _, l := range c.Lines {
		n = max(n, len(l.Requests), len(l.Throttled))
		for _, v := range l.Requests {
			maxReq = max(maxReq, v)
		}
		for _, v := range l.Throttled {
			max429 = max(max429, v)
		}
	}
	n = max(n, 1)
	span := time.Duration(n) * c.Bucket
	for _, b := range c.Bands {
		span = max(span, b.To)
	}
	subtitle := strings.Split(c.Subtitle, "\n")
	chartTop := 40 + 16*len(subtitle) + 10
	height := chartTop + chartMain + chartBottom
	if max429 > 0 {
		height += chartGap + chartSecond
	}

	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
	esc := html.EscapeString
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-labelledby="title desc" style="%s">`+"\n",
		chartWidth, height, chartWidth, height, chartFontCSS)
	p("<title id=\"title\">%s</title>\n<desc id=\"desc\">%s</desc>\n", esc(c.Title), esc(strings.Join(subtitle, " ")))
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	p(`<text x="%d" y="24" font-size="16" font-weight="bold" fill="#222">%s</text>`+"\n", chartLeft, esc(c.Title))
	for i, line := range subtitle {
		p(`<text x="%d" y="%d" font-size="12" fill="#555">%s</text>`+"\n", chartLeft, 44+16*i, esc(line))
	}

	x := func(t time.Duration) float64 {
		return chartLeft + float64(t)/float64(span)*chartPlotW
	}
	unit := c.Bucket.String()
	if c.Bucket == 100*time.Millisecond {
		unit = "100 ms"
	}
	top := float64(chartTop)
	c.panel(bw, x, span, top, chartMain, maxReq, "requests per "+unit, c.Bands, false)
	bottom := top + chartMain
	if max429 > 0 {
		top = bottom + chartGap
		c.panel(bw, x, span, top, chartSecond, max429, "429s per "+unit, nil, true)
		bottom = top + chartSecond
	}

	// Time axis labels under the lowest panel.
	step := niceStep(span.Seconds(), 10)
	for s := 0.0; s <= span.Seconds()+1e-9; s += step {
		p(`<text x="%.1f" y="%.1f" font-size="11" fill="#444" text-anchor="middle">%s</text>`+"\n",
			x(time.Duration(s*float64(time.Second))), bottom+16, trimFloat(s))
	}
	p(`<text x="%.1f" y="%.1f" font-size="12" fill="#222" text-anchor="middle">time since the run started (s)</text>`+"\n",
		chartLeft+chartPlotW/2.0, bottom+34)

	// Legend: one swatch per client, in line order.
	lx, ly := float64(chartLeft), bottom+58
	for _, l := range c.Lines {
		p(`<g class="legend" data-client="%s"><line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"%s/>`,
			esc(l.Client), lx, ly-4, lx+22, ly-4, chartColor(l.Client), dash(l.Client))
		p(`<text x="%.1f" y="%.1f" font-size="12" fill="#222">%s</text></g>`+"\n", lx+28, ly, esc(l.Client))
		lx += 28 + 7.2*float64(len(l.Client)) + 22
	}
	p("</svg>\n")
	return bw.Flush()
}

// panel draws one panel: frame, grid, y axis, bands, and a polyline per
// line (Requests, or Throttled when throttled is set), payretry's last.
func (c Chart) panel(w io.Writer, x func(time.Duration) float64, span time.Duration, top, h float64, maxV int,
	ylabel string, bands []Band, throttled bool) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	esc := html.EscapeString
	ymax := niceCeil(float64(maxV))
	y := func(v float64) float64 { return top + h - v/ymax*h }
	left, right := float64(chartLeft), float64(chartLeft+chartPlotW)

	for _, b := range bands {
		p(`<rect class="band" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#d55e00" fill-opacity="0.10"/>`+"\n",
			x(b.From), top, x(b.To)-x(b.From), h)
		p(`<text x="%.1f" y="%.1f" font-size="11" fill="#a0461b" text-anchor="middle">%s</text>`+"\n",
			(x(b.From)+x(b.To))/2, top+14, esc(b.Label))
	}
	step := max(1, niceStep(ymax, 5)) // counts are whole
	for v := 0.0; v <= ymax+1e-9; v += step {
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>`+"\n", left, y(v), right, y(v))
		p(`<text x="%.1f" y="%.1f" font-size="11" fill="#444" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, trimFloat(v))
	}
	xstep := niceStep(span.Seconds(), 10)
	for s := 0.0; s <= span.Seconds()+1e-9; s += xstep {
		xs := x(time.Duration(s * float64(time.Second)))
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`+"\n", xs, top+h, xs, top+h+4)
	}
	p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", left, top, right-left, h)
	p(`<text transform="translate(%.1f %.1f) rotate(-90)" font-size="12" fill="#222" text-anchor="middle">%s</text>`+"\n",
		left-44, top+h/2, esc(ylabel))

	order := make([]Line, 0, len(c.Lines))
	for _, l := range c.Lines { // peers first, payretry on top
		if !strings.HasPrefix(l.Client, Payretry) {
			order = append(order, l)
		}
	}
	for _, l := range c.Lines {
		if strings.HasPrefix(l.Client, Payretry) {
			order = append(order, l)
		}
	}
	kind := "requests"
	if throttled {
		kind = "429s"
	}
	for _, l := range order {
		vals := l.Requests
		if throttled {
			vals = l.Throttled
		}
		width := 1.8
		if strings.HasPrefix(l.Client, Payretry) {
			width = 2.6
		}
		var pts strings.Builder
		for i, v := range vals {
			mid := time.Duration(i)*c.Bucket + c.Bucket/2
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(mid), y(float64(v)))
		}
		p(`<g class="series" data-client="%s" data-kind="%s"><polyline points="%s" fill="none" stroke="%s" stroke-width="%.1f" stroke-linejoin="round"%s/></g>`+"\n",
			esc(l.Client), kind, strings.TrimSpace(pts.String()), chartColor(l.Client), width, dash(l.Client))
	}
}

// dash is the dash pattern of a client's line: bare is dashed.
func dash(client string) string {
	if client == Bare {
		return ` stroke-dasharray="5 3"`
	}
	return ""
}

// niceCeil returns the smallest of 1, 2, 2.5, 5 × 10^k at or above v (1 for
// v ≤ 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

// niceStep returns a step of 1, 2 or 5 × 10^k that cuts span into at most
// n parts.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	e := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*e >= raw {
			return m * e
		}
	}
	return 10 * e
}

// trimFloat prints v without trailing zeros: 2, 0.5, 12.5.
func trimFloat(v float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}
