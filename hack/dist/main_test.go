package main

import (
	"strings"
	"testing"

	k8sversion "k8s.io/apimachinery/pkg/util/version"
)

func TestKrewVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":                  "v1.2.3",
		"v1.2.3-rc.1":             "v1.2.3-rc.1",
		"v1.2.3-4-gabcdef0-dirty": "v1.2.3-4-gabcdef0-dirty", // git describe past a tag
		"1.2.3":                   "v1.2.3",
		"v0.0.0-dev":              "v0.0.0-dev", // pkg/version's default
		"63643cd":                 "v0.0.0-git-63643cd",
		"63643cd-dirty":           "v0.0.0-git-63643cd-dirty",
		"0123456":                 "v0.0.0-git-0123456", // all digits, leading zero
		"v1.2":                    "v0.0.0-git-v1-2",
		"v01.2.3":                 "v0.0.0-git-v01-2-3",
		"feature/x+y":             "v0.0.0-git-feature-x-y",
	} {
		got := KrewVersion(in)
		if got != want {
			t.Errorf("KrewVersion(%q) = %q, want %q", in, got, want)
		}
		if !semverRE.MatchString(got) {
			t.Errorf("KrewVersion(%q) = %q is not semver", in, got)
		}
		// krew parses spec.version with this function.
		if _, err := k8sversion.ParseSemantic(got); err != nil {
			t.Errorf("KrewVersion(%q) = %q: %v", in, got, err)
		}
	}
}

func TestParsePlatforms(t *testing.T) {
	ps, err := parsePlatforms("windows/amd64, linux/arm64,linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.OS+"/"+p.Arch)
	}
	if want := "linux/amd64 linux/arm64 windows/amd64"; strings.Join(got, " ") != want {
		t.Errorf("parsePlatforms sorted to %v, want %s", got, want)
	}
	for _, bad := range []string{"", "linux", "linux/", "/amd64", "linux/amd64/v2", "linux/amd64,linux/amd64"} {
		if _, err := parsePlatforms(bad); err == nil {
			t.Errorf("parsePlatforms(%q) gave no error", bad)
		}
	}
}
