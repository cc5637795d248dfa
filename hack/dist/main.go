// Command dist cross-compiles kubectl-stash, packs one reproducible
// .tar.gz per platform (the binary and LICENSE), writes sha256sums.txt and
// fills the krew manifest from its template, all into the output directory.
// `make dist` runs it.
//
// It is a Go program rather than hack/dist.sh because archive/tar and
// compress/gzip give byte-identical archives on any OS a developer builds
// on, without depending on GNU tar's --sort/--mtime/--owner flags (the BSD
// tar of macOS has none of them), and text/template fills the manifest
// without sed quoting. test/krew runs it the same way the Makefile does.
//
// Reproducibility: the binaries are built with -trimpath and -buildvcs=false
// (so neither the checkout path nor a dirty work tree changes a byte), with
// GOAMD64/GOARM64 pinned to Go's defaults; archive entries are sorted, have
// mode 0644/0755, uid/gid 0 without user or group names and one fixed mtime
// (SOURCE_DATE_EPOCH, else the last commit's time); the gzip header carries
// no name and no time, like `gzip -n`. The same sources, version and Go
// toolchain therefore give the same archives and the same sha256 sums.
//
// The filled manifest goes next to the archives (dist/stash.yaml), not into
// the work tree: its version and sums change with every build, and only the
// template (krew/stash.yaml.tmpl) is checked in.
//
// Usage:
//
//	go run ./hack/dist -version v1.2.3 -ldflags '...' [-out dist]
//	    [-platforms linux/amd64,darwin/arm64] [-krew-template krew/stash.yaml.tmpl]
//	    [-krew-out <out>/stash.yaml]
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	binName     = "kubectl-stash"
	versionPkg  = "github.com/kubectl-stash/kubectl-stash/pkg/version"
	defaultPlat = "linux/amd64,linux/arm64,darwin/amd64,darwin/arm64,windows/amd64"
	// manifestName is the krew manifest's file name: krew wants metadata.name.yaml.
	manifestName = "stash.yaml"
	// fallbackEpoch is used outside a git checkout without SOURCE_DATE_EPOCH:
	// 1980-01-01, the earliest time a zip entry can carry.
	fallbackEpoch = 315532800
)

// semverRE is semver.org's grammar with a leading v, which krew requires.
var semverRE = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(-((0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?` +
	`(\+([0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*))?$`)

// Platform is one archive, as the manifest template sees it.
type Platform struct {
	OS, Arch string
	Bin      string // file name of the binary inside the archive
	Archive  string // file name of the archive in the output directory
	SHA256   string
}

// Manifest is the template's data.
type Manifest struct {
	Version   string // krew's spec.version (semver with a leading v)
	Platforms []Platform
}

func main() {
	// An interrupt stops the go build under way too, not only this program.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	version := flag.String("version", "", "the build's version (git describe); stamped into the binary by -ldflags")
	commit := flag.String("commit", "unknown", "commit stamped into the binary when -ldflags is not given")
	ldflags := flag.String("ldflags", "", "go build -ldflags (default: -s -w and -X for -version and -commit, as in the Makefile)")
	out := flag.String("out", "dist", "output directory for the archives, sha256sums.txt and the krew manifest")
	platforms := flag.String("platforms", defaultPlat, "comma-separated GOOS/GOARCH list")
	tmpl := flag.String("krew-template", "krew/stash.yaml.tmpl", "krew manifest template")
	krewOut := flag.String("krew-out", "", "where to write the filled krew manifest (default: <out>/"+manifestName+"; \"\": don't)")
	pkg := flag.String("pkg", "./cmd/kubectl-stash", "package of the plugin's main")
	license := flag.String("license", "LICENSE", "license file packed into every archive")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	// Default by whether the flag was given, so -krew-out "" still means none.
	krewOutSet := false
	flag.Visit(func(f *flag.Flag) { krewOutSet = krewOutSet || f.Name == "krew-out" })
	if !krewOutSet {
		*krewOut = filepath.Join(*out, manifestName)
	}
	if *version == "" {
		return errors.New("-version is required")
	}
	if *ldflags == "" {
		*ldflags = fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Commit=%s", versionPkg, *version, versionPkg, *commit)
	}
	krewVersion := KrewVersion(*version)
	if krewVersion != *version {
		fmt.Fprintf(os.Stderr, "dist: version %q is not semver; the archives and the krew manifest use %q\n", *version, krewVersion)
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	plats, err := parsePlatforms(*platforms)
	if err != nil {
		return err
	}
	licenseText, err := os.ReadFile(*license)
	if err != nil {
		return fmt.Errorf("license: %w", err)
	}
	var manifestTmpl *template.Template
	if *krewOut != "" {
		// Parse before the slow builds, so a template error shows at once.
		if manifestTmpl, err = template.New(filepath.Base(*tmpl)).Option("missingkey=error").ParseFiles(*tmpl); err != nil {
			return err
		}
	}

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := removeStale(*out); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "kubectl-stash-dist-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	m := Manifest{Version: krewVersion}
	for _, p := range plats {
		p.Bin = binName
		if p.OS == "windows" {
			p.Bin += ".exe"
		}
		p.Archive = fmt.Sprintf("%s_%s_%s_%s.tar.gz", binName, krewVersion, p.OS, p.Arch)
		binPath := filepath.Join(work, p.OS+"_"+p.Arch, p.Bin)
		start := time.Now()
		if err := goBuild(ctx, p, *ldflags, *pkg, binPath); err != nil {
			return err
		}
		sum, err := writeArchive(filepath.Join(*out, p.Archive), epoch, []entry{
			{name: "LICENSE", mode: 0o644, data: licenseText},
			{name: p.Bin, mode: 0o755, path: binPath},
		})
		if err != nil {
			return fmt.Errorf("%s: %w", p.Archive, err)
		}
		p.SHA256 = sum
		m.Platforms = append(m.Platforms, p)
		fmt.Fprintf(os.Stderr, "dist: %s %s (%s)\n", sum, p.Archive, time.Since(start).Round(time.Second))
	}

	var sums strings.Builder
	for _, p := range sortedByArchive(m.Platforms) {
		fmt.Fprintf(&sums, "%s  %s\n", p.SHA256, p.Archive)
	}
	if err := writeFileAtomic(filepath.Join(*out, "sha256sums.txt"), []byte(sums.String()), 0o644); err != nil {
		return err
	}
	if manifestTmpl == nil {
		return nil
	}
	var buf bytes.Buffer
	if err := manifestTmpl.Execute(&buf, m); err != nil {
		return err
	}
	// A cheap guard against a template that no longer renders valid YAML;
	// test/krew validates the content the way krew does.
	var parsed struct {
		Spec struct {
			Platforms []any `json:"platforms"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(buf.Bytes(), &parsed); err != nil {
		return fmt.Errorf("%s renders invalid YAML: %w", *tmpl, err)
	}
	if len(parsed.Spec.Platforms) != len(m.Platforms) {
		return fmt.Errorf("%s renders %d platforms, want %d", *tmpl, len(parsed.Spec.Platforms), len(m.Platforms))
	}
	if err := writeFileAtomic(*krewOut, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "dist: wrote %s (version %s)\n", *krewOut, krewVersion)
	return nil
}

// KrewVersion returns v when it is semver with a leading v (a release tag,
// or `git describe` past one, like v1.2.3-4-gabcdef0-dirty), "v"+v when that
// is, and otherwise v0.0.0-git-<v with every character outside [0-9A-Za-z-]
// replaced by "-">. A bare commit hash such as 63643cd or 63643cd-dirty thus
// becomes v0.0.0-git-63643cd(-dirty): one pre-release identifier that is
// never purely numeric, so it is valid and sorts below every release.
func KrewVersion(v string) string {
	if semverRE.MatchString(v) {
		return v
	}
	if semverRE.MatchString("v" + v) {
		return "v" + v
	}
	clean := strings.Map(func(r rune) rune {
		if r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '-'
	}, v)
	return "v0.0.0-git-" + clean
}

func sourceDateEpoch() (int64, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a non-negative integer", s)
		}
		return n, nil
	}
	b, err := exec.Command("git", "log", "-1", "--format=%ct", "HEAD").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return n, nil
		}
	}
	return fallbackEpoch, nil
}

func parsePlatforms(s string) ([]Platform, error) {
	var ps []Platform
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		osName, arch, ok := strings.Cut(f, "/")
		if !ok || osName == "" || arch == "" || strings.Contains(arch, "/") {
			return nil, fmt.Errorf("platform %q is not GOOS/GOARCH", f)
		}
		if seen[f] {
			return nil, fmt.Errorf("platform %q given twice", f)
		}
		seen[f] = true
		ps = append(ps, Platform{OS: osName, Arch: arch})
	}
	// The manifest lists platforms in a fixed order, whatever the flag's order.
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].OS != ps[j].OS {
			return ps[i].OS < ps[j].OS
		}
		return ps[i].Arch < ps[j].Arch
	})
	return ps, nil
}

// removeStale deletes archives, checksums and the manifest of earlier runs
// (other versions), so what the directory holds of ours is this run's.
func removeStale(dir string) error {
	old, err := filepath.Glob(filepath.Join(dir, binName+"_*.tar.gz"))
	if err != nil {
		return err
	}
	old = append(old, filepath.Join(dir, "sha256sums.txt"), filepath.Join(dir, manifestName))
	for _, f := range old {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func goBuild(ctx context.Context, p Platform, ldflags, pkg, outPath string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", outPath, pkg)
	cmd.Env = append(os.Environ(),
		"CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch,
		// Go's defaults, so a developer's GOAMD64=v3 neither changes the
		// bytes nor ships a binary older CPUs cannot run.
		"GOAMD64=v1", "GOARM64=v8.0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// On an interrupt, let go build stop its compilers; kill it if it lingers.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s/%s: %w", p.OS, p.Arch, err)
	}
	return nil
}

type entry struct {
	name string
	mode int64
	data []byte // the content, or
	path string // a file to copy it from
}

// writeArchive writes a .tar.gz of entries (sorted by name) with fixed
// metadata and returns its sha256.
func writeArchive(dst string, epoch int64, entries []entry) (string, error) {
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp) // a no-op after the rename
	h := sha256.New()
	// Header left zero: no file name, mtime 0, as `gzip -n` writes.
	zw, err := gzip.NewWriterLevel(io.MultiWriter(f, h), gzip.BestCompression)
	if err != nil {
		f.Close()
		return "", err
	}
	tw := tar.NewWriter(zw)
	if err := addEntries(tw, epoch, entries); err != nil {
		f.Close()
		return "", err
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return "", err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func addEntries(tw *tar.Writer, epoch int64, entries []entry) error {
	for _, e := range entries {
		if err := addEntry(tw, epoch, e); err != nil {
			return err
		}
	}
	return nil
}

func addEntry(tw *tar.Writer, epoch int64, e entry) error {
	var r io.Reader = bytes.NewReader(e.data)
	size := int64(len(e.data))
	if e.path != "" {
		f, err := os.Open(e.path)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		r, size = f, st.Size()
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     e.name,
		Mode:     e.mode,
		Size:     size,
		ModTime:  time.Unix(epoch, 0),
		Uid:      0, // numeric owner and group 0, no names
		Gid:      0,
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if n, err := io.Copy(tw, r); err != nil {
		return err
	} else if n != size {
		return fmt.Errorf("%s changed while it was archived", e.name)
	}
	return nil
}

func sortedByArchive(ps []Platform) []Platform {
	out := append([]Platform(nil), ps...)
	sort.Slice(out, func(i, j int) bool { return out[i].Archive < out[j].Archive })
	return out
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
