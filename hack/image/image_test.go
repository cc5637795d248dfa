package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseSpec(t *testing.T) {
	_, err := parseSpec("x", []byte(`# comment
NAME=stash-x
REF='example.com/x:${VERSION}'
PACKAGES="a b
c"
ACCOUNTS=mysql:999
REMOVE="/var/log/* /tmp/x"
FILES="/usr/local/bin/x=go:./cmd/x /usr/local/bin/y=file:hack/y.sh"
IMAGE_USER=1:2
ENTRYPOINT=x
IMAGE_PATH=/usr/bin:/bin
`))
	if err == nil {
		t.Fatal("a value spanning lines parsed")
	}
	s, err := parseSpec("x", []byte(strings.Replace(`NAME=stash-x
REF='example.com/x:${VERSION}'
PACKAGES="a b c"
ACCOUNTS=mysql:999
DIRS=/run/x:999:998:0750
REMOVE="/var/log/* /tmp/x"
FILES="/usr/local/bin/x=go:./cmd/x /usr/local/bin/y=file:hack/y.sh"
IMAGE_USER=1:2
ENTRYPOINT=x
IMAGE_PATH=/usr/bin:/bin
`, "\n", "\n\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{
		Image: "x", Name: "stash-x", Ref: "example.com/x:${VERSION}", Packages: []string{"a", "b", "c"},
		Accounts: []Account{{"mysql", 999}}, Dirs: []Dir{{"/run/x", 999, 998, 0o750}}, Remove: []string{"/var/log/*", "/tmp/x"},
		Files: []File{{"/usr/local/bin/x", "go", "./cmd/x"}, {"/usr/local/bin/y", "file", "hack/y.sh"}},
		User:  "1:2", Entrypoint: []string{"x"}, Path: "/usr/bin:/bin",
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got  %+v\nwant %+v", s, want)
	}
	if got := s.ref("v1.2.3"); got != "example.com/x:v1.2.3" {
		t.Errorf("ref = %q", got)
	}
	for _, bad := range []string{
		"NAME=a\nNAME=b",           // twice
		"FOO=1",                    // unknown
		`NAME="$HOME"`,             // sh would expand it
		"NAME=a b",                 // sh would run b
		"FILES=/x=zip:y",           // kind
		"IMAGE_USER=nobody",        // not numeric
		"REMOVE=relative/*",        // not absolute
		"export NAME=stash-agent ", // not KEY=value
	} {
		if _, err := parseSpec("x", []byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// The recipes in this directory parse, and the shell reads them alike.
func TestRecipes(t *testing.T) {
	for _, img := range []string{"agent", "mariadb"} {
		s, err := loadSpec(".", img)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Files) == 0 {
			t.Errorf("%s: no files", img)
		}
	}
}

func TestRemoved(t *testing.T) {
	globs := []string{"/var/log/*", "/var/lib/mysql/*"}
	for name, want := range map[string]bool{
		"var/log":                    false,
		"var/log/apt":                true,
		"var/log/apt/history.log":    true,
		"var/lib/mysql":              false,
		"var/lib/mysql/ibdata1":      true,
		"var/lib/mysql/mysql/db.MAD": true,
		"var/lib/mysqlx":             false,
	} {
		if got := removed(name, globs); got != want {
			t.Errorf("removed(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestDebianSources(t *testing.T) {
	got := deb822Entries("Types: deb deb-src\n# c\nURIs: http://m/debian\nSuites: bookworm bookworm-updates\nComponents: main contrib\nSigned-By: /k.gpg\n\nEnabled: no\nTypes: deb\nURIs: http://x\nSuites: bookworm\nComponents: main\n")
	want := [][4]string{
		{"deb", "http://m/debian", "bookworm", "main contrib"},
		{"deb", "http://m/debian", "bookworm-updates", "main contrib"},
		{"deb-src", "http://m/debian", "bookworm", "main contrib"},
		{"deb-src", "http://m/debian", "bookworm-updates", "main contrib"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("deb822: got %q", got)
	}
	got = oneLineEntries("deb [signed-by=/k.gpg] http://m/debian bookworm main # c\n# deb http://x y z\n")
	if want := [][4]string{{"deb", "http://m/debian", "bookworm", "main"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("one-line: got %q", got)
	}
}

// baseTar writes a base tarball as mmdebstrap would, in its own order.
func baseTar(t *testing.T, dir string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	add := func(h tar.Header, body string) {
		h.ModTime, h.AccessTime, h.ChangeTime = now, now, now
		h.Format = tar.FormatPAX
		h.Size = int64(len(body))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	add(tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}, "")
	add(tar.Header{Typeflag: tar.TypeDir, Name: "./usr/", Mode: 0o755}, "")
	add(tar.Header{Typeflag: tar.TypeDir, Name: "./usr/bin/", Mode: 0o755}, "")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "./usr/bin/z-perl", Mode: 0o4755, Uid: 0, Gid: 42, Uname: "root", Gname: "shadow"}, "perl")
	add(tar.Header{Typeflag: tar.TypeLink, Name: "./usr/bin/a-perl", Linkname: "./usr/bin/z-perl"}, "")
	add(tar.Header{Typeflag: tar.TypeSymlink, Name: "./usr/bin/mysql", Linkname: "mariadb"}, "")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "./usr/bin/ping", Mode: 0o755, PAXRecords: map[string]string{capKey: "\x01", "SCHILY.xattr.user.x": "y"}}, "ping")
	add(tar.Header{Typeflag: tar.TypeDir, Name: "./var/", Mode: 0o755}, "")
	add(tar.Header{Typeflag: tar.TypeDir, Name: "./var/log/", Mode: 0o755}, "")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "./var/log/dpkg.log", Mode: 0o644}, "log")
	add(tar.Header{Typeflag: tar.TypeChar, Name: "./dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, "")
	add(tar.Header{Typeflag: tar.TypeReg, Name: "./etc/machine-id", Mode: 0o444}, "0123456789abcdef\n")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "base.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// layer builds the layer of the base with an added file and returns its
// digest and its entries.
func layer(t *testing.T, base, added string, epoch int64) (string, []*tar.Header, map[string]string) {
	t.Helper()
	f, err := os.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	be, err := readBase(f)
	if err != nil {
		t.Fatal(err)
	}
	s := Spec{Remove: []string{"/var/log/*"}, Dirs: []Dir{{"/run/mysqld", 999, 999, 0o755}}}
	entries, err := layerEntries(be, s, map[string]string{"/usr/local/bin/agent": added}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := writeLayer(filepath.Join(t.TempDir(), "layer.tar.gz"), f, entries, epoch)
	if err != nil {
		t.Fatal(err)
	}
	zf, err := os.Open(b.path)
	if err != nil {
		t.Fatal(err)
	}
	defer zf.Close()
	zr, err := gzip.NewReader(zf)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header name %q, mtime %v", zr.Name, zr.ModTime)
	}
	var hdrs []*tar.Header
	bodies := map[string]string{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		hdrs, bodies[h.Name] = append(hdrs, h), string(body)
	}
	return b.digest, hdrs, bodies
}

func TestLayer(t *testing.T) {
	dir := t.TempDir()
	base := baseTar(t, dir)
	added := filepath.Join(dir, "agent")
	os.WriteFile(added, []byte("#!/bin/sh\n"), 0o700)
	const epoch = 1700000000
	d1, hdrs, bodies := layer(t, base, added, epoch)

	var names []string
	for _, h := range hdrs {
		names = append(names, h.Name)
		if h.ModTime.Unix() != epoch || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %v atime %v ctime %v user %q group %q", h.Name, h.ModTime, h.AccessTime, h.ChangeTime, h.Uname, h.Gname)
		}
		for k := range h.PAXRecords {
			if k != capKey && k != "path" && k != "linkpath" {
				t.Errorf("%s: PAX record %s", h.Name, k)
			}
		}
	}
	// No /dev/null (the runtime's), no log; the added file's parents made.
	want := []string{"etc/machine-id", "run/", "run/mysqld/", "usr/", "usr/bin/", "usr/bin/a-perl", "usr/bin/mysql", "usr/bin/ping", "usr/bin/z-perl",
		"usr/local/", "usr/local/bin/", "usr/local/bin/agent", "var/", "var/log/"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("entries\n got %q\nwant %q", names, want)
	}
	byName := map[string]*tar.Header{}
	for _, h := range hdrs {
		byName[h.Name] = h
	}
	// The hard link's first name in order holds the content, with the
	// original's mode and owner.
	if h := byName["usr/bin/a-perl"]; h.Typeflag != tar.TypeReg || bodies[h.Name] != "perl" || h.Mode != 0o4755 || h.Gid != 42 {
		t.Errorf("a-perl: %+v %q", h, bodies[h.Name])
	}
	if h := byName["usr/bin/z-perl"]; h.Typeflag != tar.TypeLink || h.Linkname != "usr/bin/a-perl" {
		t.Errorf("z-perl: %+v", h)
	}
	if h := byName["usr/bin/ping"]; h.PAXRecords[capKey] != "\x01" || len(h.PAXRecords) != 1 {
		t.Errorf("ping xattrs %q", h.PAXRecords)
	}
	if h := byName["usr/local/bin/agent"]; h.Mode != 0o755 || h.Uid != 0 || bodies[h.Name] != "#!/bin/sh\n" {
		t.Errorf("agent: %+v", h)
	}
	if h := byName["run/mysqld/"]; h.Uid != 999 || h.Gid != 999 || h.Mode != 0o755 {
		t.Errorf("run/mysqld: %+v", h)
	}
	if h := byName["etc/machine-id"]; h.Size != 0 {
		t.Errorf("machine-id kept %q", bodies[h.Name])
	}

	// Same inputs, same digest; later base mtimes are clamped anyway.
	if d2, _, _ := layer(t, baseTar(t, t.TempDir()), added, epoch); d2 != d1 {
		t.Errorf("digests differ: %s, %s", d1, d2)
	}
}
