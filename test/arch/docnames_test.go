package arch

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestArchitectureNamesExist keeps docs/architecture.md true: every
// function the data paths are described with (a camelCase name such as
// `runBackup`, or a qualified one such as `lifecycle.Claim` or
// `sqlload.Loader.Position`) exists in pkg/.
func TestArchitectureNamesExist(t *testing.T) {
	doc, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	// Declared names, by package name: funcs, methods ("Type.Method"), types, vars, consts.
	decls := map[string]map[string]bool{}
	fset := token.NewFileSet()
	err = filepath.WalkDir("../../pkg", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		names := decls[f.Name.Name]
		if names == nil {
			names = map[string]bool{}
			decls[f.Name.Name] = names
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				names[d.Name.Name] = true
				if d.Recv != nil && len(d.Recv.List) == 1 {
					names[recvType(d.Recv.List[0].Type)+"."+d.Name.Name] = true
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						names[s.Name.Name] = true
					case *ast.ValueSpec:
						for _, n := range s.Names {
							names[n.Name] = true
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Only the sections that walk through the code.
	text := string(doc)
	var sections []string
	for _, h := range []string{"## A backup, step by step", "## A restore, step by step", "## The binlog archive, step by step"} {
		i := strings.Index(text, h)
		if i < 0 {
			t.Fatalf("docs/architecture.md has no section %q", h)
		}
		rest := text[i+len(h):]
		if j := strings.Index(rest, "\n## "); j >= 0 {
			rest = rest[:j]
		}
		sections = append(sections, rest)
	}
	camel := regexp.MustCompile("^[a-z]+[A-Z][A-Za-z0-9]*$")
	qualified := regexp.MustCompile(`^([a-z]+)\.([A-Z][A-Za-z0-9]*(?:\.[A-Z][A-Za-z0-9]*)?)$`)
	code := regexp.MustCompile("`([^`\\s]+)`")
	checked := 0
	for _, sec := range sections {
		for _, m := range code.FindAllStringSubmatch(sec, -1) {
			name := strings.TrimSuffix(m[1], "()")
			switch {
			case camel.MatchString(name):
				checked++
				if !decls["agent"][name] {
					t.Errorf("docs/architecture.md names `%s`, which pkg/agent does not declare", name)
				}
			case qualified.MatchString(name):
				q := qualified.FindStringSubmatch(name)
				if decls[q[1]] == nil {
					continue // not one of our packages (e.g. restic's own commands)
				}
				checked++
				if !decls[q[1]][q[2]] {
					t.Errorf("docs/architecture.md names `%s`, which package %s does not declare", name, q[1])
				}
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d function names found in the data-path sections; the test reads the wrong text", checked)
	}
}

func recvType(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return recvType(e.X)
	case *ast.IndexExpr:
		return recvType(e.X)
	case *ast.IndexListExpr:
		return recvType(e.X)
	case *ast.Ident:
		return e.Name
	}
	return ""
}
