// promcheck: the checks of `promtool check rules`, and PromQL parsing for dashboards, built
// from Prometheus's own packages (rulefmt and promql/parser, as promtool uses them) without
// promtool's service-discovery dependencies, so tests/deploy.rs can build it in seconds.
//
//	promcheck rules FILE...   validate rule files; print one JSON object per rule
//	promcheck exprs           read a JSON array of PromQL expressions on stdin; print a
//	                          JSON array of {expr, error, metrics}
//
// Every output names the metrics each expression selects, so the test can compare them
// with docs/metrics.md. Exit status 1 on any invalid rule or expression.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

type ruleOut struct {
	File    string   `json:"file"`
	Group   string   `json:"group"`
	Alert   string   `json:"alert,omitempty"`
	Record  string   `json:"record,omitempty"`
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
}

type exprOut struct {
	Expr    string   `json:"expr"`
	Error   string   `json:"error,omitempty"`
	Metrics []string `json:"metrics"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: promcheck rules FILE... | promcheck exprs < exprs.json")
		os.Exit(2)
	}
	p := parser.NewParser(parser.Options{})
	switch os.Args[1] {
	case "rules":
		os.Exit(rules(p, os.Args[2:]))
	case "exprs":
		os.Exit(exprs(p))
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}

// rules does what `promtool check rules` does: rulefmt.ParseFile (YAML shape, unknown
// fields refused, names, durations, label and annotation templates, every expression
// parsed), then a duplicate check (same alert or record name and labels in a file).
func rules(p parser.Parser, files []string) int {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	status := 0
	enc := json.NewEncoder(os.Stdout)
	for _, file := range files {
		groups, errs := rulefmt.ParseFile(file, false, model.LegacyValidation, p, logger)
		if len(errs) > 0 {
			for _, err := range errs {
				fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			}
			status = 1
			continue
		}
		seen := map[string]bool{}
		count := 0
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				count++
				key := r.Alert + "\x00" + r.Record + "\x00" + labels.FromMap(r.Labels).String()
				if seen[key] {
					fmt.Fprintf(os.Stderr, "%s: duplicate rule %q%q with labels %v\n", file, r.Alert, r.Record, r.Labels)
					status = 1
				}
				seen[key] = true
				metrics, err := metricNames(p, r.Expr)
				if err != nil {
					fmt.Fprintf(os.Stderr, "%s: group %q rule %q: %v\n", file, g.Name, r.Alert+r.Record, err)
					status = 1
				}
				_ = enc.Encode(ruleOut{file, g.Name, r.Alert, r.Record, r.Expr, metrics})
			}
		}
		if count == 0 {
			fmt.Fprintf(os.Stderr, "%s: no rules\n", file)
			status = 1
		}
	}
	return status
}

func exprs(p parser.Parser) int {
	var input []string
	if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
		fmt.Fprintln(os.Stderr, "reading the expressions:", err)
		return 2
	}
	status := 0
	out := make([]exprOut, 0, len(input))
	for _, e := range input {
		metrics, err := metricNames(p, e)
		o := exprOut{Expr: e, Metrics: metrics}
		if err != nil {
			o.Error = err.Error()
			status = 1
		}
		out = append(out, o)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
	return status
}

// metricNames parses expr and returns the metric names its selectors name. A selector
// without a literal name (a regex on __name__) is an error: its metrics could not be
// checked against the documentation.
func metricNames(p parser.Parser, expr string) ([]string, error) {
	node, err := p.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	var bad error
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
		}
		if name == "" {
			bad = fmt.Errorf("selector %s names no metric literally", vs.String())
			return nil
		}
		names[name] = true
		return nil
	})
	list := make([]string, 0, len(names))
	for n := range names {
		list = append(list, n)
	}
	sort.Strings(list)
	return list, bad
}
