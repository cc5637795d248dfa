// Command image builds the agent image and a MariaDB server image for
// tests as reproducible OCI image archives, without a docker engine:
// `make image` runs it. `ctr -n k8s.io images import FILE` loads one into
// containerd (a kind or k3s node, say) under its reference.
//
// Each image is one layer: a Debian bookworm minbase root filesystem built
// by mmdebstrap from the machine's configured Debian mirror with the
// image's packages, minus apt's lists and cache and the logs, plus the
// image's own files (the agent, restic, an entrypoint script). The recipe
// of each image is hack/image/<image>.env; agent.env is also the recipe of
// the Dockerfile's final stage, so a docker build gives the same contents.
//
// The root filesystem is cached by its recipe under
// ${XDG_CACHE_HOME:-~/.cache}/kubectl-stash/images, so only the first build
// (about two minutes per image) runs mmdebstrap. The archive is
// reproducible: the same recipe, mirror state, sources and Go toolchain
// give the same bytes and the same image digest (see writeLayer and
// writeImage for how).
//
// Usage (from the repository root):
//
//	go run ./hack/image -version v1.2.3 [-ldflags '...'] [-images agent,mariadb]
//	    [-out dist] [-ref agent=REGISTRY/REPO:TAG] [-cache DIR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	versionPkg = "github.com/kubectl-stash/kubectl-stash/pkg/version"
	// fallbackEpoch is used outside a git checkout without SOURCE_DATE_EPOCH.
	fallbackEpoch = 315532800
)

// tagRE is a reference's tag as registries and containerd accept it.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// options are the flags.
type options struct {
	images, out, version, ldflags, cache, specDir, suite string
	refs                                                 map[string]string
}

func parseFlags() (options, error) {
	o := options{refs: map[string]string{}}
	flag.StringVar(&o.images, "images", "agent,mariadb", "comma-separated images to build: the recipes hack/image/<image>.env")
	flag.StringVar(&o.out, "out", "dist", "output directory of the <name>-image_<version>_linux_amd64.tar archives")
	flag.StringVar(&o.version, "version", "", "the build's version: the agent's tag, stamped into stash-agent, and part of the archive names (required)")
	commit := flag.String("commit", "unknown", "commit stamped into go: binaries when -ldflags is not given")
	flag.StringVar(&o.ldflags, "ldflags", "", "go build -ldflags of go: binaries (default: -s -w and -X for -version and -commit, as in the Makefile)")
	flag.StringVar(&o.cache, "cache", defaultCache(), "cache of the mmdebstrap root filesystems")
	flag.StringVar(&o.specDir, "spec-dir", "hack/image", "directory of the <image>.env recipes")
	flag.StringVar(&o.suite, "suite", "bookworm", "Debian suite")
	flag.Func("ref", "IMAGE=REFERENCE overrides the recipe's reference (repeatable), e.g. agent=example.com/stash-agent:dev", func(v string) error {
		img, ref, ok := strings.Cut(v, "=")
		if !ok || img == "" || ref == "" {
			return errors.New("want IMAGE=REFERENCE")
		}
		o.refs[img] = ref
		return nil
	})
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./hack/image -version VERSION [flags]   (from the repository root)\n\n"+
			"Builds the images of hack/image/<image>.env as OCI archives in -out; prints, per image:\n"+
			"image, reference, digest, archive size, archive, build time.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	switch {
	case flag.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", flag.Args())
	case o.version == "":
		return o, errors.New("-version is required")
	case !tagRE.MatchString(o.version):
		return o, fmt.Errorf("-version %q is not a valid image tag", o.version)
	}
	if o.ldflags == "" {
		o.ldflags = fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Commit=%s", versionPkg, o.version, versionPkg, *commit)
	}
	return o, nil
}

func run(ctx context.Context) error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	var specs []Spec
	for _, name := range strings.Split(o.images, ",") {
		s, err := loadSpec(o.specDir, strings.TrimSpace(name))
		if err != nil {
			return err
		}
		if r := o.refs[s.Image]; r != "" {
			s.Ref = r
		}
		specs = append(specs, s)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "kubectl-stash-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	for _, s := range specs {
		start := time.Now()
		img, err := build(ctx, o, s, epoch, filepath.Join(work, s.Image))
		if err != nil {
			return fmt.Errorf("%s: %w", s.Image, err)
		}
		fmt.Printf("%s\t%s\t%s\t%.1f MiB\t%s\t%s\n", s.Image, img.ref, img.digest,
			float64(img.size)/(1<<20), img.archive, time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}

// build makes one image archive in o.out.
func build(ctx context.Context, o options, s Spec, epoch int64, work string) (image, error) {
	ref := s.ref(o.version)
	if i := strings.LastIndex(ref, ":"); i < 0 || strings.Contains(ref[i:], "/") || !tagRE.MatchString(ref[i+1:]) {
		return image{}, fmt.Errorf("reference %q has no valid tag", ref)
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return image{}, err
	}
	basePath, err := baseRootfs(ctx, s, o.suite, o.cache)
	if err != nil {
		return image{}, err
	}
	added, err := gatherFiles(ctx, s, work, o.ldflags)
	if err != nil {
		return image{}, err
	}
	base, err := os.Open(basePath)
	if err != nil {
		return image{}, err
	}
	defer base.Close()
	baseEntries, err := readBase(base)
	if err != nil {
		return image{}, fmt.Errorf("%s: %w", basePath, err)
	}
	entries, err := layerEntries(baseEntries, s, added, epoch)
	if err != nil {
		return image{}, err
	}
	layer, diffID, err := writeLayer(filepath.Join(work, "layer.tar.gz"), base, entries, epoch)
	if err != nil {
		return image{}, err
	}
	dst := filepath.Join(o.out, fmt.Sprintf("%s-image_%s_linux_amd64.tar", s.Name, o.version))
	img, err := writeImage(dst, s, ref, layer, diffID, epoch)
	if err != nil {
		return image{}, err
	}
	return img, removeStale(o.out, s.Name, dst)
}

// removeStale deletes the image's archives of other versions but keep, so
// out holds one per image, as `make dist` keeps one per platform.
func removeStale(out, name, keep string) error {
	old, err := filepath.Glob(filepath.Join(out, name+"-image_*_linux_amd64.tar"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if f == keep {
			continue
		}
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	return nil
}

func defaultCache() string {
	dir := os.Getenv("XDG_CACHE_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache")
	}
	return filepath.Join(dir, "kubectl-stash", "images")
}

// sourceDateEpoch is SOURCE_DATE_EPOCH, else the last commit's time.
func sourceDateEpoch() (int64, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a non-negative integer", s)
		}
		return n, nil
	}
	if b, err := exec.Command("git", "log", "-1", "--format=%ct", "HEAD").Output(); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return n, nil
		}
	}
	return fallbackEpoch, nil
}
