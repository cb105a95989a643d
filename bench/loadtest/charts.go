package main

import (
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// series is one set of bars: a legend name and a value per category.
type series struct {
	name   string
	values []float64
}

// barChart writes a grouped bar chart: categories on the X axis, one bar
// per series in each. With logY the bars' heights are decades above the
// smallest positive value (a log scale; gonum's LogScale cannot draw bars,
// which start at 0); values <= 0 are drawn empty.
func barChart(path, title, ylabel string, categories []string, ss []series, logY bool) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	p.Legend.Left = false
	width := vg.Points(math.Max(4, 60/float64(max(len(ss), 1))))
	minPos := math.Inf(1)
	for _, s := range ss {
		for _, v := range s.values {
			if v > 0 && v < minPos {
				minPos = v
			}
		}
	}
	base := 0.0
	if logY && !math.IsInf(minPos, 1) {
		base = math.Floor(math.Log10(minPos))
	}
	top := 0.0
	for i, s := range ss {
		vals := make(plotter.Values, len(s.values))
		for j, v := range s.values {
			switch {
			case !logY:
				vals[j] = v
			case v > 0:
				vals[j] = math.Log10(v) - base
			}
		}
		for _, v := range vals {
			top = math.Max(top, v)
		}
		b, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		b.LineStyle.Width = vg.Length(0)
		b.Color = plotutil.Color(i)
		b.Offset = width * vg.Length(float64(i)-float64(len(ss)-1)/2)
		p.Add(b)
		if len(ss) > 1 {
			p.Legend.Add(s.name, b)
		}
	}
	p.Y.Min = 0
	p.Y.Max = top * 1.25
	if logY {
		p.Y.Tick.Marker = decades{base}
	}
	p.NominalX(categories...)
	p.Add(plotter.NewGrid())
	p.BackgroundColor = color.White
	w := vg.Length(max(6, 1.3*float64(len(categories)))) * vg.Inch
	return p.Save(w, 4*vg.Inch, path)
}

// decades labels a log10-transformed axis: y is 10^(base+y).
type decades struct{ base float64 }

func (d decades) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for k := math.Floor(min); k <= math.Ceil(max); k++ {
		ts = append(ts, plot.Tick{Value: k, Label: strconv.FormatFloat(math.Pow(10, d.base+k), 'g', -1, 64)})
		for m := 2.0; m < 10; m++ {
			if v := k + math.Log10(m); v <= max {
				ts = append(ts, plot.Tick{Value: v})
			}
		}
	}
	return ts
}
