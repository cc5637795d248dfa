package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Spec is one image's recipe, read from hack/image/<image>.env. The file is
// also sourced by /bin/sh (the Dockerfile's final stage reads agent.env), so
// it holds only KEY=value, KEY="value" and KEY='value' lines and comments;
// parseSpec rejects anything else rather than guess what sh would do.
type Spec struct {
	Image      string   // the file's base name: agent, mariadb
	Name       string   // NAME: archive stem, dist/<Name>-image_<version>_linux_amd64.tar
	Ref        string   // REF: image reference; ${VERSION} is the build's version
	Packages   []string // PACKAGES: Debian packages on top of minbase
	Accounts   []Account
	Dirs       []Dir    // DIRS: PATH:UID:GID:MODE directories added to the layer
	Remove     []string // REMOVE: shell globs dropped from the layer (rm -rf in the Dockerfile)
	Files      []File   // FILES: DEST=KIND:SOURCE added to the layer
	User       string   // IMAGE_USER: config User, uid:gid
	Entrypoint []string // ENTRYPOINT: config Entrypoint, split on spaces
	Path       string   // IMAGE_PATH: config Env PATH
}

// Account is a system user and its group, created with a fixed id before
// the packages install, so a package's adduser keeps it instead of picking
// the next free id.
type Account struct {
	Name string
	ID   int
}

// Dir is a directory added to the layer (or replacing the base's).
type Dir struct {
	Path     string
	UID, GID int
	Mode     int64
}

// File is one file added on top of the root filesystem.
type File struct {
	Dest   string // absolute path in the image
	Kind   string // go, tool or file
	Source string // package, tool name or repository path
}

var (
	lineRE = regexp.MustCompile(`^([A-Z_][A-Z0-9_]*)=(.*)$`)
	// plainRE is what sh reads unquoted as one word without expanding it.
	plainRE = regexp.MustCompile(`^[A-Za-z0-9_./:,@%+=-]*$`)
	userRE  = regexp.MustCompile(`^\d+:\d+$`)
)

// parseEnv reads KEY=value lines: comments and blank lines are skipped,
// values may be single- or double-quoted (double-quoted ones may not hold
// $, `, \ or ", which sh would interpret).
func parseEnv(data []byte) (map[string]string, error) {
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("line %d: want KEY=value, got %q", n, line)
		}
		key, val := m[1], m[2]
		switch {
		case len(val) >= 2 && val[0] == '\'' && val[len(val)-1] == '\'' && !strings.Contains(val[1:len(val)-1], "'"):
			val = val[1 : len(val)-1]
		case len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' && !strings.ContainsAny(val[1:len(val)-1], "$`\\\""):
			val = val[1 : len(val)-1]
		case plainRE.MatchString(val):
		default:
			return nil, fmt.Errorf("line %d: %s: quote the value with '...' or \"...\" (no $, `, \\ or \" inside double quotes)", n, key)
		}
		if _, dup := vars[key]; dup {
			return nil, fmt.Errorf("line %d: %s set twice", n, key)
		}
		vars[key] = val
	}
	return vars, sc.Err()
}

// loadSpec reads dir/<image>.env.
func loadSpec(dir, image string) (Spec, error) {
	file := filepath.Join(dir, image+".env")
	data, err := os.ReadFile(file)
	if err != nil {
		return Spec{}, err
	}
	s, err := parseSpec(image, data)
	if err != nil {
		return Spec{}, fmt.Errorf("%s: %w", file, err)
	}
	return s, nil
}

func parseSpec(image string, data []byte) (Spec, error) {
	vars, err := parseEnv(data)
	if err != nil {
		return Spec{}, err
	}
	known := map[string]bool{}
	get := func(k string) string { known[k] = true; return vars[k] }
	s := Spec{
		Image:      image,
		Name:       get("NAME"),
		Ref:        get("REF"),
		Packages:   strings.Fields(get("PACKAGES")),
		Remove:     strings.Fields(get("REMOVE")),
		User:       get("IMAGE_USER"),
		Entrypoint: strings.Fields(get("ENTRYPOINT")),
		Path:       get("IMAGE_PATH"),
	}
	for _, a := range strings.Fields(get("ACCOUNTS")) {
		name, id, ok := strings.Cut(a, ":")
		n, err := strconv.Atoi(id)
		if !ok || err != nil || name == "" || n <= 0 {
			return Spec{}, fmt.Errorf("ACCOUNTS: want NAME:ID, got %q", a)
		}
		s.Accounts = append(s.Accounts, Account{Name: name, ID: n})
	}
	for _, d := range strings.Fields(get("DIRS")) {
		f := strings.Split(d, ":")
		if len(f) != 4 || !strings.HasPrefix(f[0], "/") {
			return Spec{}, fmt.Errorf("DIRS: want /PATH:UID:GID:MODE, got %q", d)
		}
		uid, err1 := strconv.Atoi(f[1])
		gid, err2 := strconv.Atoi(f[2])
		mode, err3 := strconv.ParseInt(f[3], 8, 32)
		if err1 != nil || err2 != nil || err3 != nil || mode > 0o7777 {
			return Spec{}, fmt.Errorf("DIRS: want /PATH:UID:GID:MODE (octal), got %q", d)
		}
		s.Dirs = append(s.Dirs, Dir{Path: f[0], UID: uid, GID: gid, Mode: mode})
	}
	for _, f := range strings.Fields(get("FILES")) {
		dest, src, ok := strings.Cut(f, "=")
		kind, source, ok2 := strings.Cut(src, ":")
		if !ok || !ok2 || !strings.HasPrefix(dest, "/") || source == "" {
			return Spec{}, fmt.Errorf("FILES: want /DEST=KIND:SOURCE, got %q", f)
		}
		if kind != "go" && kind != "tool" && kind != "file" {
			return Spec{}, fmt.Errorf("FILES: %q: kind %q is not go, tool or file", f, kind)
		}
		s.Files = append(s.Files, File{Dest: dest, Kind: kind, Source: source})
	}
	for k := range vars {
		if !known[k] {
			return Spec{}, fmt.Errorf("unknown key %s", k)
		}
	}
	switch {
	case s.Name == "" || s.Ref == "":
		return Spec{}, fmt.Errorf("NAME and REF are required")
	case len(s.Packages) == 0:
		return Spec{}, fmt.Errorf("PACKAGES is empty")
	case !userRE.MatchString(s.User):
		return Spec{}, fmt.Errorf("IMAGE_USER %q: want numeric uid:gid, so runAsNonRoot can check it", s.User)
	case len(s.Entrypoint) == 0 || s.Path == "":
		return Spec{}, fmt.Errorf("ENTRYPOINT and IMAGE_PATH are required")
	}
	for _, r := range s.Remove {
		if !strings.HasPrefix(r, "/") {
			return Spec{}, fmt.Errorf("REMOVE: %q is not absolute", r)
		}
		if _, err := filepath.Match(r, ""); err != nil {
			return Spec{}, fmt.Errorf("REMOVE: %q: %w", r, err)
		}
	}
	return s, nil
}

// ref is the image reference for the build's version.
func (s Spec) ref(version string) string {
	return strings.ReplaceAll(s.Ref, "${VERSION}", version)
}
