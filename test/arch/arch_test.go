// Package arch enforces the never-arrows of docs/architecture.md: imports
// that must not exist between our packages. It reads the import graph with
// `go list -deps -json`, so it needs no dependency beyond the go tool.
//
// Only the packages' own imports count, not their tests': a test may drive
// the agent and the plugin together, the shipped binaries may not.
package arch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/kubectl-stash/kubectl-stash"

// rule forbids every import path chain from a package matching from to a
// package matching to. Rules are transitive: linking a package through a
// third one is as bad as importing it.
type rule struct {
	name string
	from func(string) bool
	to   func(string) bool
}

// under matches a package and the packages below it.
func under(paths ...string) func(string) bool {
	return func(p string) bool {
		for _, q := range paths {
			if p == q || strings.HasPrefix(p, q+"/") {
				return true
			}
		}
		return false
	}
}

func ours(rel string) string { return module + "/" + rel }

// rules are the never-arrows.
func rules() []rule {
	agent := under(ours("pkg/agent"), ours("cmd/agent"))
	cli := under(ours("pkg/cli"), ours("cmd/kubectl-stash"))
	apis := under(ours("pkg/apis"))
	return []rule{{
		// The plugin and the agent agree through pkg/contract; the plugin
		// linking the agent would ship its informers and data path.
		name: "the plugin (pkg/cli, cmd/kubectl-stash) must not import the agent (pkg/agent/..., cmd/agent)",
		from: cli, to: agent,
	}, {
		name: "the agent (pkg/agent/..., cmd/agent) must not import the plugin (pkg/cli)",
		from: agent, to: cli,
	}, {
		// The data path stays testable and reusable without a cluster.
		name: "pkg/restic, pkg/database, pkg/sqlload, pkg/binlog and pkg/dumpfilter must not import anything from k8s.io",
		from: under(ours("pkg/restic"), ours("pkg/database"), ours("pkg/sqlload"), ours("pkg/binlog"), ours("pkg/dumpfilter")),
		to:   func(p string) bool { return p == "k8s.io" || strings.HasPrefix(p, "k8s.io/") },
	}, {
		// The API types are the bottom layer: everything may use them.
		name: "the API types (pkg/apis/...) must not import our other packages",
		from: apis,
		to:   func(p string) bool { return under(module)(p) && !apis(p) },
	}}
}

// graph maps an import path to the packages it imports (not its tests').
type graph map[string][]string

// violations lists, for each rule, the shortest chain from a package the
// rule covers to a package it forbids.
func violations(g graph, rs []rule) []string {
	var out []string
	for _, r := range rs {
		for _, src := range sortedKeys(g) {
			if !r.from(src) {
				continue
			}
			if chain := shortestChain(g, src, r.to); chain != nil {
				out = append(out, fmt.Sprintf("%s\n\tchain: %s", r.name, strings.Join(chain, " -> ")))
			}
		}
	}
	return out
}

// shortestChain is a breadth-first search from src to a package that
// matches bad; nil when there is none.
func shortestChain(g graph, src string, bad func(string) bool) []string {
	prev := map[string]string{src: ""}
	queue := []string{src}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, q := range g[p] {
			if _, seen := prev[q]; seen {
				continue
			}
			prev[q] = p
			if bad(q) {
				var chain []string
				for n := q; n != ""; n = prev[n] {
					chain = append([]string{n}, chain...)
				}
				return chain
			}
			queue = append(queue, q)
		}
	}
	return nil
}

func sortedKeys(g graph) []string {
	keys := make([]string, 0, len(g))
	for k := range g {
		keys = append(keys, k)
	}
	// Sorted, so failures read the same on every run.
	sort.Strings(keys)
	return keys
}

// loadGraph runs go list over pkg and cmd, what the rules are about.
func loadGraph() (graph, error) {
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Imports,Standard,Error", "./pkg/...", "./cmd/...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps: %w: %s", err, stderr.String())
	}
	g := graph{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Imports    []string
			Standard   bool
			Error      *struct{ Err string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		if p.Error != nil {
			return nil, fmt.Errorf("go list: package %s: %s", p.ImportPath, p.Error.Err)
		}
		if !p.Standard {
			g[p.ImportPath] = p.Imports
		}
	}
	return g, nil
}

func TestNeverArrows(t *testing.T) {
	g, err := loadGraph()
	if err != nil {
		t.Fatal(err)
	}
	// A rule that matches no package guards nothing: a rename would
	// silently switch it off.
	for _, r := range rules() {
		found := false
		for p := range g {
			found = found || r.from(p)
		}
		if !found {
			t.Errorf("rule %q covers no package: update the rule", r.name)
		}
	}
	for _, v := range violations(g, rules()) {
		t.Errorf("never-arrow crossed: %s", v)
	}
}

// The checker itself: a chain through a third package is found and named.
func TestViolationsNameTheChain(t *testing.T) {
	g := graph{
		ours("pkg/cli"):            {ours("pkg/render")},
		ours("pkg/render"):         {ours("pkg/agent/schedule"), "k8s.io/api/core/v1"},
		ours("pkg/agent/schedule"): nil,
		ours("pkg/restic"):         {"os"},
		ours("pkg/apis/stash/v1"):  {ours("pkg/apis/meta"), "k8s.io/apimachinery/pkg/runtime"},
	}
	got := violations(g, rules())
	if len(got) != 1 {
		t.Fatalf("violations = %q, want one", got)
	}
	want := ours("pkg/cli") + " -> " + ours("pkg/render") + " -> " + ours("pkg/agent/schedule")
	if !strings.Contains(got[0], want) || !strings.Contains(got[0], "must not import the agent") {
		t.Errorf("violation %q does not name the chain %q and its rule", got[0], want)
	}
}
