package bench

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

// WriteHTML writes a self-contained page (inline SVG and CSS, no script)
// with the summary and, over time, the throughput and the latency of each
// result. The page is well-formed XML as well as HTML.
func WriteHTML(w io.Writer, results ...*Result) error {
	type section struct {
		Title      string
		Summary    string
		Throughput template.HTML
		Latency    template.HTML
		Connected  template.HTML
	}
	var secs []section
	for _, res := range results {
		var sum bytes.Buffer
		res.WriteSummary(&sum)
		s := section{Title: res.Name, Summary: sum.String()}
		var t, sent, recv, p50, p99, conn []float64
		for _, p := range res.Series {
			t = append(t, p.T)
			sent = append(sent, p.SentRate)
			recv = append(recv, p.RecvRate)
			p50 = append(p50, p.P50)
			p99 = append(p99, p.P99)
			conn = append(conn, float64(p.Connected))
		}
		recvName := "received/s"
		if res.LatencyKind == "ack" {
			recvName = "acknowledged/s"
		}
		if res.Scenario != Conn {
			s.Throughput = chart("Throughput (messages/s)", t, []serie{{"published/s", "#1f77b4", sent}, {recvName, "#d62728", recv}})
			s.Latency = chart("Latency, "+res.LatencyKind+" (ms)", t, []serie{{"p50", "#2ca02c", p50}, {"p99", "#ff7f0e", p99}})
		}
		s.Connected = chart("Connections", t, []serie{{"connected", "#9467bd", conn}})
		secs = append(secs, s)
	}
	return reportTmpl.Execute(w, secs)
}

var reportTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" lang="en">
<head>
<meta charset="utf-8"/>
<title>starling bench{{range .}} · {{.Title}}{{end}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
svg { display: block; margin: 1em 0; }
svg text { font-size: 11px; fill: #444; }
</style>
</head>
<body>
{{range .}}<section>
<h1>{{.Title}}</h1>
<pre>{{.Summary}}</pre>
{{.Throughput}}
{{.Latency}}
{{.Connected}}
</section>
{{end}}</body>
</html>
`))

type serie struct {
	name  string
	color string
	ys    []float64
}

// chart draws a line chart of series over xs as an SVG element.
func chart(title string, xs []float64, ss []serie) template.HTML {
	const (
		W, H            = 720.0, 240.0
		left, right     = 70.0, 130.0
		top, bottom     = 28.0, 30.0
		plotW, plotH    = W - left - right, H - top - bottom
		ticks           = 4
		fmtFloat        = "%.1f"
		svgNS           = "http://www.w3.org/2000/svg"
		strokeAxisColor = "#999"
	)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="%s" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img">`, svgNS, W, H, W, H)
	fmt.Fprintf(&b, `<text x="%.0f" y="16" font-weight="bold">%s</text>`, left, template.HTMLEscapeString(title))
	xmax, ymax := 0.0, 0.0
	for _, x := range xs {
		xmax = max(xmax, x)
	}
	for _, s := range ss {
		for _, y := range s.ys {
			if !math.IsNaN(y) && !math.IsInf(y, 0) {
				ymax = max(ymax, y)
			}
		}
	}
	if xmax == 0 {
		xmax = 1
	}
	ymax = niceCeil(ymax)
	px := func(x float64) float64 { return left + plotW*x/xmax }
	py := func(y float64) float64 { return top + plotH - plotH*y/ymax }
	// Axes and grid.
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="%s"/>`, left, top, plotW, plotH, strokeAxisColor)
	for i := 0; i <= ticks; i++ {
		y := ymax * float64(i) / ticks
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`, left, py(y), left+plotW, py(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`, left-6, py(y)+4, axisLabel(y))
		x := xmax * float64(i) / ticks
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%ss</text>`, px(x), top+plotH+16, strings.TrimSuffix(fmt.Sprintf(fmtFloat, x), ".0"))
	}
	for k, s := range ss {
		var pts []string
		for i, y := range s.ys {
			if i >= len(xs) || math.IsNaN(y) || math.IsInf(y, 0) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(xs[i]), py(y)))
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`, s.color, strings.Join(pts, " "))
		}
		ly := top + 14 + 16*float64(k)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`, W-right+10, ly-4, W-right+28, ly-4, s.color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`, W-right+32, ly, template.HTMLEscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func axisLabel(v float64) string {
	if v >= 1000 {
		return human(v)
	}
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}
