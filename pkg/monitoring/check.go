package monitoring

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var (
	stringLit   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	metricName  = regexp.MustCompile(`\bstash_[a-z0-9_]+`)
	labelList   = regexp.MustCompile(`\b(?:by|on|without|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	matchers    = regexp.MustCompile(`\{([^}]*)\}`)
	matcherName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	templateVar = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)|\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

// Uses returns the stash_ metrics a PromQL expression reads and the
// labels it names (in by/on/without/ignoring/group lists and matchers).
// A small scanner, not a PromQL parser: enough for the expressions this
// package writes, which TestQueriesParse also runs through promtool.
func Uses(expr string) (metrics, labels []string) {
	e := stringLit.ReplaceAllString(expr, `""`)
	metrics = uniq(metricName.FindAllString(e, -1))
	var ls []string
	for _, m := range labelList.FindAllStringSubmatch(e, -1) {
		for l := range strings.SplitSeq(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				ls = append(ls, l)
			}
		}
	}
	for _, m := range matchers.FindAllStringSubmatch(e, -1) {
		for _, n := range matcherName.FindAllStringSubmatch(m[1], -1) {
			ls = append(ls, n[1])
		}
	}
	return metrics, uniq(ls)
}

// templateLabels are the labels an alert's template or a panel's legend
// names.
func templateLabels(s string) []string {
	var out []string
	for _, m := range templateVar.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1]+m[2])
	}
	return uniq(out)
}

func uniq(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// Check reads metrics in the text exposition format (a Pushgateway's or an
// agent's /metrics) and returns, for every shipped query that reads a
// metric covers accepts, what the exposition lacks: the metric, or a label
// the query uses on it. Nothing means every such query has its data.
func Check(exposition []byte, covers func(metric string) bool) ([]string, error) {
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(exposition))
	if err != nil {
		return nil, fmt.Errorf("parse the exposition: %w", err)
	}
	have := map[string]map[string]bool{}
	for name, f := range families {
		ls := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = true
			}
		}
		have[name] = ls
	}
	var problems []string
	for _, q := range Queries() {
		ms, ls := Uses(q.Expr)
		ls = uniq(append(ls, q.Labels...))
		for _, m := range ms {
			if !covers(m) {
				continue
			}
			got, ok := have[m]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: metric %s is not there", q.Where, m))
				continue
			}
			for _, l := range ls {
				if !got[l] {
					problems = append(problems, fmt.Sprintf("%s: metric %s has no label %s", q.Where, m, l))
				}
			}
		}
	}
	return problems, nil
}
