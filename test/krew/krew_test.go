// Package krew builds the release archives with hack/dist (what `make dist`
// runs) into a temporary directory and checks the filled krew manifest the
// way krew and krew-index's validate-krew-manifest do: structure, version,
// selectors, checksums, and that each platform's archive installs its `bin`.
// It also checks that the archives are reproducible and that the manifest
// lands in the output directory, never in the work tree.
package krew

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sversion "k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

const (
	testVersion = "v0.1.0"
	testCommit  = "krewtest"
	testEpoch   = 1735689600 // 2025-01-01T00:00:00Z, passed as SOURCE_DATE_EPOCH
	apiVersion  = "krew.googlecontainertools.github.com/v1alpha2"
	releaseURL  = "https://github.com/kubectl-stash/kubectl-stash/releases/download/"
	versionPkg  = "github.com/kubectl-stash/kubectl-stash/pkg/version"
)

// The platforms `make dist` must ship.
var wantPlatforms = []string{"darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64", "windows/amd64"}

// Values krew's selectors are matched against (runtime.GOOS/GOARCH of the
// machines krew runs on).
var (
	krewOS   = map[string]bool{"linux": true, "darwin": true, "windows": true, "freebsd": true}
	krewArch = map[string]bool{"amd64": true, "arm64": true, "386": true, "arm": true, "ppc64le": true, "s390x": true}
)

var (
	pluginNameRE = regexp.MustCompile(`^[a-z0-9-]+$`)
	sha256RE     = regexp.MustCompile(`^[a-f0-9]{64}$`)
	// semver.org's grammar, with the leading v krew requires.
	semverRE = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
		`(-((0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?` +
		`(\+([0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*))?$`)
)

// Plugin mirrors krew's index.Plugin; it is decoded strictly, as krew does.
type Plugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string     `json:"version"`
		Homepage         string     `json:"homepage"`
		ShortDescription string     `json:"shortDescription"`
		Description      string     `json:"description"`
		Caveats          string     `json:"caveats"`
		Platforms        []Platform `json:"platforms"`
	} `json:"spec"`
}

// Platform mirrors krew's index.Platform.
type Platform struct {
	Selector *metav1.LabelSelector `json:"selector"`
	URI      string                `json:"uri"`
	SHA256   string                `json:"sha256"`
	Files    []FileOperation       `json:"files,omitempty"`
	Bin      string                `json:"bin"`
}

// FileOperation mirrors krew's index.FileOperation.
type FileOperation struct {
	From string `json:"from"`
	To   string `json:"to"`
}

func TestDist(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the five cross-compiles")
	}
	root := testenv.RepoRoot()
	inputsBefore := fingerprint(t, root)
	exe := buildDist(t, root)

	out := t.TempDir()
	start := time.Now()
	runDist(t, root, exe, out, "-krew-out", filepath.Join(out, "stash.yaml")) // as the Makefile does
	t.Logf("hack/dist built %d platforms in %s", len(wantPlatforms), time.Since(start).Round(time.Second))
	manifestPath := filepath.Join(out, "stash.yaml")
	p := readPlugin(t, manifestPath)

	t.Run("manifest is valid for krew", func(t *testing.T) {
		validatePlugin(t, p, "stash")
		if p.Spec.Version != testVersion {
			t.Errorf("spec.version = %q, want %q (the -version given)", p.Spec.Version, testVersion)
		}
		var got []string
		for _, pl := range p.Spec.Platforms {
			got = append(got, pl.Selector.MatchLabels["os"]+"/"+pl.Selector.MatchLabels["arch"])
		}
		sort.Strings(got)
		if !reflect.DeepEqual(got, wantPlatforms) {
			t.Errorf("platforms = %v, want %v", got, wantPlatforms)
		}
	})

	license, err := os.ReadFile(filepath.Join(root, "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{} // archive -> sha256, from the manifest
	for _, pl := range p.Spec.Platforms {
		osName, arch := pl.Selector.MatchLabels["os"], pl.Selector.MatchLabels["arch"]
		archive := fmt.Sprintf("kubectl-stash_%s_%s_%s.tar.gz", p.Spec.Version, osName, arch)
		sums[archive] = pl.SHA256
		t.Run("install "+osName+"/"+arch, func(t *testing.T) {
			if want := releaseURL + p.Spec.Version + "/" + archive; pl.URI != want {
				t.Errorf("uri = %q, want %q", pl.URI, want)
			}
			if path.Base(pl.URI) != archive {
				t.Fatalf("uri %q does not end with the archive's name %s", pl.URI, archive)
			}
			wantBin := "kubectl-stash"
			if osName == "windows" {
				wantBin += ".exe"
			}
			if pl.Bin != wantBin {
				t.Errorf("bin = %q, want %q", pl.Bin, wantBin)
			}
			installPlatform(t, filepath.Join(out, archive), pl, osName, arch, license)
		})
	}

	t.Run("sha256sums.txt", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(out, "sha256sums.txt"))
		if err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		names := make([]string, 0, len(sums))
		for n := range sums {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&want, "%s  %s\n", sums[n], n)
		}
		if string(b) != want.String() {
			t.Errorf("sha256sums.txt =\n%s\nwant (from the manifest)\n%s", b, want.String())
		}
		// Nothing but the archives and the two generated files.
		entries, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, ok := sums[e.Name()]; !ok && e.Name() != "sha256sums.txt" && e.Name() != "stash.yaml" {
				t.Errorf("unexpected file in the output directory: %s", e.Name())
			}
		}
	})

	// `make dist` once rewrote krew/stash.yaml on every build; only the
	// template is checked in now.
	t.Run("no filled manifest in the work tree", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(root, "krew", "stash.yaml")); err == nil {
			t.Error("krew/stash.yaml exists; the filled manifest belongs in dist/ (delete it)")
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		// One platform is enough to show the build and packing are
		// deterministic, and costs one link instead of five.
		const again = "linux/amd64"
		archive := fmt.Sprintf("kubectl-stash_%s_%s.tar.gz", testVersion, strings.ReplaceAll(again, "/", "_"))
		out2 := t.TempDir()
		// Without -krew-out, as a bare `go run ./hack/dist`: the manifest
		// goes into -out.
		runDist(t, root, exe, out2, "-platforms", again)
		if p2 := readPlugin(t, filepath.Join(out2, "stash.yaml")); len(p2.Spec.Platforms) != 1 {
			t.Errorf("default -krew-out: %d platforms in %s/stash.yaml, want 1", len(p2.Spec.Platforms), out2)
		}
		if inputsAfter := fingerprint(t, root); inputsAfter != inputsBefore {
			t.Skip("the sources changed while the test ran (someone is editing them); not comparing builds")
		}
		first, err := os.ReadFile(filepath.Join(out, archive))
		if err != nil {
			t.Fatal(err)
		}
		second, err := os.ReadFile(filepath.Join(out2, archive))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("%s differs between two builds of the same sources: sha256 %s then %s",
				archive, sha256Hex(first), sha256Hex(second))
		}
	})
}

// buildDist builds hack/dist once; running the binary rather than `go run`
// lets an interrupt reach it, and through it the go build it runs.
func buildDist(t *testing.T, root string) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "dist")
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	cmd := exec.Command("go", "build", "-o", exe, "./hack/dist")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./hack/dist: %v\n%s", err, b)
	}
	return exe
}

// runDist runs hack/dist as `make dist` does, with a fixed version and
// time, and stops it before the test's own deadline.
func runDist(t *testing.T, root, exe, out string, extra ...string) {
	t.Helper()
	args := append([]string{
		"-version", testVersion,
		"-ldflags", fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Commit=%s", versionPkg, testVersion, versionPkg, testCommit),
		"-out", out,
		"-krew-template", "krew/stash.yaml.tmpl",
	}, extra...)
	deadline := time.Now().Add(20 * time.Minute)
	if d, ok := t.Deadline(); ok {
		deadline = d.Add(-30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", testEpoch))
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/dist %s: %v (a cold build cache makes the five cross-compiles slow; -timeout may need raising)\n%s",
			strings.Join(args, " "), err, b)
	}
}

func readPlugin(t *testing.T, file string) Plugin {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run `make dist`)", err)
	}
	var p Plugin
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if want := strings.TrimSuffix(filepath.Base(file), ".yaml"); p.Metadata.Name != want {
		t.Errorf("%s: metadata.name = %q; krew wants the file's name, %q", file, p.Metadata.Name, want)
	}
	return p
}

// validatePlugin applies krew's ValidatePlugin rules, and the line-length
// and selector rules of krew-index's validate-krew-manifest.
func validatePlugin(t *testing.T, p Plugin, name string) {
	t.Helper()
	if p.APIVersion != apiVersion {
		t.Errorf("apiVersion = %q, want %q", p.APIVersion, apiVersion)
	}
	if p.Kind != "Plugin" {
		t.Errorf("kind = %q, want Plugin", p.Kind)
	}
	if !pluginNameRE.MatchString(p.Metadata.Name) || p.Metadata.Name != name {
		t.Errorf("metadata.name = %q, want %q matching %s", p.Metadata.Name, name, pluginNameRE)
	}
	s := p.Spec
	if !strings.HasPrefix(s.Version, "v") || !semverRE.MatchString(s.Version) {
		t.Errorf("spec.version %q is not semver with a leading v", s.Version)
	} else if _, err := k8sversion.ParseSemantic(s.Version); err != nil {
		t.Errorf("spec.version: krew's parser says %v", err)
	}
	if !strings.HasPrefix(s.Homepage, "https://") {
		t.Errorf("spec.homepage = %q, want an https URL", s.Homepage)
	}
	if s.ShortDescription == "" || strings.ContainsAny(s.ShortDescription, "\r\n") {
		t.Errorf("spec.shortDescription %q must be one non-empty line", s.ShortDescription)
	}
	if strings.TrimSpace(s.Description) == "" {
		t.Error("spec.description is empty")
	}
	for field, text := range map[string]string{"shortDescription": s.ShortDescription, "description": s.Description, "caveats": s.Caveats} {
		limit := 80
		if field == "shortDescription" {
			limit = 70
		}
		for _, line := range strings.Split(text, "\n") {
			if len(line) > limit && strings.Contains(strings.TrimSpace(line), " ") {
				t.Errorf("spec.%s has a line longer than %d characters: %q", field, limit, line)
			}
		}
	}
	if len(s.Platforms) == 0 {
		t.Fatal("spec.platforms is empty")
	}
	seen := map[string]int{}
	for i, pl := range s.Platforms {
		where := fmt.Sprintf("spec.platforms[%d]", i)
		if !strings.HasPrefix(pl.URI, "https://") {
			t.Errorf("%s.uri = %q, want an https URL", where, pl.URI)
		}
		if !strings.Contains(pl.URI, s.Version) {
			t.Errorf("%s.uri %q does not name the version %s", where, pl.URI, s.Version)
		}
		if !sha256RE.MatchString(pl.SHA256) {
			t.Errorf("%s.sha256 = %q, want 64 lowercase hex digits", where, pl.SHA256)
		}
		if pl.Bin == "" {
			t.Errorf("%s.bin is empty", where)
		}
		if pl.Files != nil && len(pl.Files) == 0 {
			t.Errorf("%s.files must be left out or non-empty", where)
		}
		for _, f := range pl.Files {
			if f.From == "" || f.To == "" {
				t.Errorf("%s.files: from and to must be set: %+v", where, f)
			}
		}
		sel := pl.Selector
		if sel == nil {
			t.Errorf("%s has no selector", where)
			continue
		}
		if len(sel.MatchExpressions) > 0 {
			t.Errorf("%s.selector uses matchExpressions; only matchLabels os and arch are expected", where)
		}
		keys := make([]string, 0, len(sel.MatchLabels))
		for k := range sel.MatchLabels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !reflect.DeepEqual(keys, []string{"arch", "os"}) {
			t.Errorf("%s.selector.matchLabels has keys %v, want exactly os and arch", where, keys)
			continue
		}
		osName, arch := sel.MatchLabels["os"], sel.MatchLabels["arch"]
		if !krewOS[osName] || !krewArch[arch] {
			t.Errorf("%s.selector matches os=%q arch=%q, which krew never runs on", where, osName, arch)
		}
		if j, dup := seen[osName+"/"+arch]; dup {
			t.Errorf("spec.platforms[%d] and [%d] both select %s/%s", j, i, osName, arch)
		}
		seen[osName+"/"+arch] = i
	}
}

// installPlatform does what `kubectl krew install --manifest --archive`
// does with one platform: check the archive's sha256, unpack it (files
// left out means every file to the install root) and find `bin` there. It
// also checks the archive's reproducible metadata and the binary itself.
func installPlatform(t *testing.T, archive string, pl Platform, osName, arch string, license []byte) {
	t.Helper()
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatalf("archive named by the uri: %v", err)
	}
	if got := sha256Hex(data); got != pl.SHA256 {
		t.Fatalf("sha256 of %s is %s, the manifest says %s", filepath.Base(archive), got, pl.SHA256)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || zr.Comment != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header has name %q, comment %q, mtime %v; want none (gzip -n)", zr.Name, zr.Comment, zr.ModTime)
	}
	dir := t.TempDir()
	tr := tar.NewReader(zr)
	var names []string
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("more than 100 entries")
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if hdr.Typeflag != tar.TypeReg {
			t.Errorf("%s: type %q, want a regular file", hdr.Name, hdr.Typeflag)
			continue
		}
		if !fs.ValidPath(hdr.Name) || strings.Contains(hdr.Name, "/") {
			t.Errorf("entry %q is not a plain name at the archive's root", hdr.Name)
			continue
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: owner %d(%q):%d(%q), want numeric 0:0", hdr.Name, hdr.Uid, hdr.Uname, hdr.Gid, hdr.Gname)
		}
		if hdr.ModTime.Unix() != testEpoch {
			t.Errorf("%s: mtime %v, want SOURCE_DATE_EPOCH %d", hdr.Name, hdr.ModTime.UTC(), testEpoch)
		}
		f, err := os.OpenFile(filepath.Join(dir, hdr.Name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, fs.FileMode(hdr.Mode).Perm())
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		switch hdr.Name {
		case "LICENSE":
			if hdr.Mode != 0o644 {
				t.Errorf("LICENSE: mode %o, want 644", hdr.Mode)
			}
		case pl.Bin:
			if hdr.Mode != 0o755 {
				t.Errorf("%s: mode %o, want 755", hdr.Name, hdr.Mode)
			}
		}
	}
	if want := []string{"LICENSE", pl.Bin}; !reflect.DeepEqual(names, want) {
		t.Errorf("entries %v, want %v in this order", names, want)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "LICENSE")); err != nil || !bytes.Equal(got, license) {
		t.Errorf("LICENSE in the archive differs from the repository's (%v)", err)
	}

	bin := filepath.Join(dir, pl.Bin)
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatalf("bin %q is not in the archive: %v", pl.Bin, err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		t.Errorf("bin %q has mode %v, want an executable regular file", pl.Bin, st.Mode())
	}
	checkBinary(t, bin, osName, arch)
}

// checkBinary checks the executable's format and CPU, and the build
// settings Go records in it, so krew hands each platform its own build.
func checkBinary(t *testing.T, bin, osName, arch string) {
	t.Helper()
	var machine string
	switch osName {
	case "linux":
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatalf("not an ELF executable: %v", err)
		}
		machine = map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64"}[f.Machine]
		f.Close()
	case "darwin":
		f, err := macho.Open(bin)
		if err != nil {
			t.Fatalf("not a Mach-O executable: %v", err)
		}
		machine = map[macho.Cpu]string{macho.CpuAmd64: "amd64", macho.CpuArm64: "arm64"}[f.Cpu]
		f.Close()
	case "windows":
		f, err := pe.Open(bin)
		if err != nil {
			t.Fatalf("not a PE executable: %v", err)
		}
		machine = map[uint16]string{pe.IMAGE_FILE_MACHINE_AMD64: "amd64", pe.IMAGE_FILE_MACHINE_ARM64: "arm64"}[f.Machine]
		f.Close()
	}
	if machine != arch {
		t.Errorf("binary is built for CPU %q, the selector says %s", machine, arch)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("build info: %v", err)
	}
	if info.Path != "github.com/kubectl-stash/kubectl-stash/cmd/kubectl-stash" {
		t.Errorf("main package %q, want cmd/kubectl-stash", info.Path)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": osName, "GOARCH": arch} {
		if settings[k] != want {
			t.Errorf("build setting %s = %q, want %q", k, settings[k], want)
		}
	}
	// -trimpath keeps -ldflags out of the build info; the stamped commit
	// string shows the -X flags took effect (the host's build also runs).
	if data, err := os.ReadFile(bin); err != nil || !bytes.Contains(data, []byte(testCommit)) {
		t.Errorf("the binary does not carry the commit %q that -ldflags stamps (%v)", testCommit, err)
	}
	if _, ok := settings["vcs.revision"]; ok {
		t.Error("the binary records VCS state; archives would differ between a clean and a dirty tree")
	}

	if osName != runtime.GOOS || arch != runtime.GOARCH {
		return
	}
	// The host's own build runs: the plugin prints the stamped version.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "version", "--client")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "KUBECONFIG="+filepath.Join(t.TempDir(), "none"))
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s version --client: %v\n%s", filepath.Base(bin), err, b)
	}
	if !strings.Contains(string(b), testVersion) {
		t.Errorf("%s version --client printed %q, want it to name %s", filepath.Base(bin), b, testVersion)
	}
}

// fingerprint hashes the inputs of the plugin's build, so the
// reproducibility check can tell a nondeterministic build from an edit
// made while the test ran.
func fingerprint(t *testing.T, root string) string {
	t.Helper()
	h := sha256.New()
	for _, p := range []string{"go.mod", "go.sum", "LICENSE", "cmd", "pkg", "manifests", "hack/dist", "krew/stash.yaml.tmpl"} {
		err := filepath.WalkDir(filepath.Join(root, p), func(file string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // an editor's temporary file, gone again
			}
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(file)
			if errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(h, "%s gone\n", file)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s %d\n", file, len(b))
			h.Write(b)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
