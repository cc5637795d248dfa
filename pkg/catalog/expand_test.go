package catalog

import (
	"errors"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	p := map[string]string{"args": "--databases `shop`; rm -rf / $(id)", "empty": ""}
	cases := map[string]string{
		"--args=${args:=--all-databases}": "--args=--databases `shop`; rm -rf / $(id)",
		"--x=${missing:=dflt}":            "--x=dflt",
		"--e=${empty:=dflt}":              "--e=",
		"plain":                           "plain",
		"${args}${empty}":                 "--databases `shop`; rm -rf / $(id)",
	}
	for in, want := range cases {
		got, err := Expand(in, p)
		if err != nil || got != want {
			t.Errorf("Expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Expand("${nope}", p); !errors.Is(err, ErrUnknownParam) {
		t.Errorf("unknown param: %v", err)
	}
	for _, bad := range []string{"${unterminated", "${:=x}"} {
		if _, err := Expand(bad, p); err == nil {
			t.Errorf("Expand(%q) accepted", bad)
		}
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"--args=${args:=--all-databases}", "${a}${b:=c}", "${", "}${x:=${y}}", "$$${}"} {
		f.Add(s, "v")
	}
	f.Fuzz(func(t *testing.T, s, v string) {
		out, err := Expand(s, map[string]string{"args": v, "a": v})
		if err == nil && !strings.Contains(s, "${") && out != s {
			t.Fatalf("text without placeholders changed: %q -> %q", s, out)
		}
	})
}

func TestCatalogCarriesStashNamesAndResolvesVersions(t *testing.T) {
	c := New("img")
	for _, n := range []string{"mysql-backup-8.0.21", "mysql-restore-8.0.21", "mysql-backup-5.7", "mysql-backup-8.4", "mariadb-backup-10", "mariadb-restore-11"} {
		task, ok := c.Tasks[n]
		if !ok {
			t.Fatalf("catalog lacks Task %s", n)
		}
		for _, st := range task.Spec.Steps {
			if _, ok := c.Functions[st.Name]; !ok {
				t.Errorf("Task %s names missing Function %s", n, st.Name)
			}
		}
	}
	for _, tc := range []struct{ typ, ver, want string }{
		{"kubedb.com/mariadb", "10.11.6", "mariadb-backup-10"},
		{"mariadb", "11.4", "mariadb-backup-11"},
		{"kubedb.com/mysql", "8.0.35", "mysql-backup-8.0"},
		{"mysql", "8.4.2", "mysql-backup-8.4"},
		{"MySQL", "5.7.44", "mysql-backup-5.7"},
		{"", "", "mysql-backup-8.0"},
	} {
		v, err := VersionFor(tc.typ, tc.ver)
		if err != nil || BackupTaskName(v) != tc.want {
			t.Errorf("VersionFor(%q, %q) = %s, %v; want %s", tc.typ, tc.ver, BackupTaskName(v), err, tc.want)
		}
	}
	if _, err := VersionFor("postgres", "16"); err == nil {
		t.Error("a PostgreSQL AppBinding was accepted")
	}
}
