package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// bar is one bar of a chart.
type bar struct {
	Label string
	Value float64 // seconds
	Ours  bool    // drawn in the product's colour
}

// barChart saves a horizontal bar chart of seconds as a PNG.
func barChart(path, title string, bars []bar) error {
	if len(bars) == 0 {
		return nil
	}
	ours := color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	other := color.RGBA{R: 0xa0, G: 0xa0, B: 0xa0, A: 0xff}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds (median)"
	p.X.Min = 0
	labels := make([]string, len(bars))
	var maxV float64
	var xys plotter.XYs
	var texts []string
	// The first bar on top: gonum draws index 0 at the bottom.
	for i, b := range bars {
		y := len(bars) - 1 - i
		labels[y] = b.Label
		v := plotter.Values{b.Value}
		bc, err := plotter.NewBarChart(v, vg.Points(14))
		if err != nil {
			return fmt.Errorf("chart %s: %w", title, err)
		}
		bc.Horizontal = true
		bc.XMin = float64(y)
		bc.LineStyle.Width = 0
		bc.Color = other
		if b.Ours {
			bc.Color = ours
		}
		p.Add(bc)
		maxV = max(maxV, b.Value)
		xys = append(xys, plotter.XY{X: b.Value, Y: float64(y)})
		texts = append(texts, fmt.Sprintf(" %.1f s", b.Value))
	}
	lab, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: texts})
	if err != nil {
		return fmt.Errorf("chart %s: %w", title, err)
	}
	for i := range lab.TextStyle {
		lab.TextStyle[i].YAlign = -0.5
	}
	p.Add(lab)
	p.X.Max = maxV * 1.2
	p.NominalY(labels...)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	h := vg.Length(len(bars))*vg.Points(26) + vg.Points(70)
	if err := p.Save(7*vg.Inch, h, path); err != nil {
		return fmt.Errorf("save chart %s: %w", path, err)
	}
	return nil
}

// writeCharts draws the backup, restore and tuning charts; it returns the
// files written, relative to the report.
func writeCharts(r *results, dir, reportDir string) (map[string]string, error) {
	out := map[string]string{}
	rel := func(name string) string {
		p := filepath.Join(dir, name)
		if r, err := filepath.Rel(reportDir, p); err == nil {
			return filepath.ToSlash(r)
		}
		return p
	}
	short := map[string]string{
		"dump":           "mysqldump > /dev/null",
		"dump-agent":     "mysqldump, agent's flags",
		"stash":          "Stash: mysqldump | restic",
		"ours-local":     "ours, local",
		"ours-s3":        "ours, S3",
		"ours-unchanged": "ours, nothing changed",
		"ours-changed":   "ours, 1% rows changed",
		"raw-restore":    "mariadb < dump.sql",
		"ours-restore":   "ours: kubectl stash restore",
	}
	var backup, restore, tuning []bar
	for _, s := range r.Backup {
		backup = append(backup, bar{short[s.Key], s.median().Seconds(), strings.HasPrefix(s.Key, "ours")})
	}
	for _, s := range r.Restore {
		restore = append(restore, bar{short[s.Key], s.median().Seconds(), strings.HasPrefix(s.Key, "ours")})
	}
	for _, s := range r.ReadAhead {
		label := "restic dump | " + strings.TrimPrefix(s.Label, "read-ahead ")
		if s.Key == "stream-discard" {
			label = "restic dump > /dev/null"
		}
		restore = append(restore, bar{label, s.median().Seconds(), false})
	}
	for _, t := range r.Compression {
		tuning = append(tuning, bar{"restic " + t.Setting, t.Time.median().Seconds(), false})
	}
	for _, t := range r.PackSize {
		if !strings.Contains(t.Setting, "default") {
			tuning = append(tuning, bar{"restic " + t.Setting, t.Time.median().Seconds(), false})
		}
	}
	for _, c := range []struct {
		name, title string
		bars        []bar
	}{
		{"backup.png", fmt.Sprintf("Backup of a %s dump", humanBytes(r.Data.DumpBytes)), backup},
		{"restore.png", fmt.Sprintf("Restore of a %s dump", humanBytes(r.Data.DumpBytes)), restore},
		{"tuning.png", "restic backup --stdin-from-command, new repository", tuning},
	} {
		if err := barChart(filepath.Join(dir, c.name), c.title, c.bars); err != nil {
			return nil, err
		}
		out[c.name] = rel(c.name)
	}
	return out, nil
}
