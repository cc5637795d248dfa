package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// baseEpoch is mmdebstrap's SOURCE_DATE_EPOCH (2025-01-01T00:00:00Z). It is
// fixed, not the commit time, so a new commit reuses the cached root
// filesystem; the layer clamps every mtime to the build's epoch on top.
const baseEpoch = 1735689600

// slimPaths are dpkg's path filters of debian:*-slim (debuerreotype's
// slimify lists): no docs but the copyright files, no man or info pages, no
// translations. Written to /etc/dpkg/dpkg.cfg.d, they also hold for a
// later apt-get install in the image, as in the slim image.
func slimPaths() []string {
	return []string{
		"path-exclude=/usr/share/doc/*",
		"path-include=/usr/share/doc/*/copyright",
		"path-exclude=/usr/share/groff/*",
		"path-exclude=/usr/share/info/*",
		"path-exclude=/usr/share/linda/*",
		"path-exclude=/usr/share/lintian/overrides/*",
		"path-exclude=/usr/share/locale/*",
		"path-include=/usr/share/locale/locale.alias",
		"path-exclude=/usr/share/man/*",
	}
}

// debianSources returns the machine's apt entries for suite and its
// -updates and -security suites, as one-line "deb URI SUITE COMPONENTS"
// mirrors for mmdebstrap: the image comes from the mirror (or snapshot)
// this machine is configured with. Without any, Debian's own mirrors.
func debianSources(suite string) []string {
	var out []string
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	for _, f := range append([]string{"/etc/apt/sources.list"}, files...) {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var entries [][4]string // type, uri, suite, components
		switch {
		case strings.HasSuffix(f, ".sources"):
			entries = deb822Entries(string(data))
		case strings.HasSuffix(f, ".list"):
			entries = oneLineEntries(string(data))
		}
		for _, e := range entries {
			if e[0] == "deb" && (e[2] == suite || strings.HasPrefix(e[2], suite+"-")) {
				out = append(out, strings.Join(e[:], " "))
			}
		}
	}
	if len(out) == 0 {
		out = []string{
			"deb http://deb.debian.org/debian " + suite + " main",
			"deb http://deb.debian.org/debian " + suite + "-updates main",
			"deb http://deb.debian.org/debian-security " + suite + "-security main",
		}
	}
	return out
}

// oneLineEntries parses sources.list lines ("deb [opts] URI SUITE COMP...").
func oneLineEntries(text string) [][4]string {
	var out [][4]string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if i := strings.Index(line, "["); i >= 0 {
			if j := strings.Index(line[i:], "]"); j >= 0 {
				line = line[:i] + line[i+j+1:] // options: mmdebstrap finds signed-by itself
			}
		}
		f := strings.Fields(line)
		if len(f) >= 4 {
			out = append(out, [4]string{f[0], f[1], f[2], strings.Join(f[3:], " ")})
		}
	}
	return out
}

// deb822Entries parses a .sources file: one entry per Types×URIs×Suites of
// each stanza without Enabled: no.
func deb822Entries(text string) [][4]string {
	var out [][4]string
	for _, stanza := range strings.Split(strings.ReplaceAll(text, "\r", ""), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
				continue // comments and continuation lines (Signed-By keys)
			}
			if k, v, ok := strings.Cut(line, ":"); ok {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		comps := strings.Join(strings.Fields(fields["components"]), " ")
		for _, typ := range strings.Fields(fields["types"]) {
			for _, uri := range strings.Fields(fields["uris"]) {
				for _, suite := range strings.Fields(fields["suites"]) {
					out = append(out, [4]string{typ, uri, suite, comps})
				}
			}
		}
	}
	return out
}

// recipe is a spec's mmdebstrap command line but for the output path.
type recipe struct {
	opts    []string
	suite   string
	mirrors []string
}

func newRecipe(s Spec, suite string, mirrors []string) recipe {
	opts := []string{"--variant=minbase", "--format=tar", "--include=" + strings.Join(s.Packages, ",")}
	for _, p := range slimPaths() {
		opts = append(opts, "--dpkgopt="+p)
	}
	for _, a := range s.Accounts {
		// Before the packages install: their adduser finds the account and keeps it.
		opts = append(opts, fmt.Sprintf(
			`--essential-hook=echo '%[1]s:x:%[2]d:%[2]d::/nonexistent:/usr/sbin/nologin' >> "$1/etc/passwd" && echo '%[1]s:x:%[2]d:' >> "$1/etc/group"`,
			a.Name, a.ID))
	}
	return recipe{opts: opts, suite: suite, mirrors: mirrors}
}

// argv is mmdebstrap's arguments writing the tarball to target.
func (r recipe) argv(target string) []string {
	args := append([]string{}, r.opts...)
	return append(append(args, r.suite, target), r.mirrors...)
}

// baseRootfs returns the cached root filesystem tarball of the spec,
// running mmdebstrap only when no tarball of the same recipe is cached:
// <cache>/<name>-<key>.tar, key = sha256 of the mmdebstrap arguments
// (packages, accounts, filters, suite, mirrors) and mmdebstrap's version.
func baseRootfs(ctx context.Context, s Spec, suite, cache string) (string, error) {
	r := newRecipe(s, suite, debianSources(suite))
	ver, err := exec.CommandContext(ctx, "mmdebstrap", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("mmdebstrap --version: %w (hack/install-image-tools.sh installs it)", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\nSOURCE_DATE_EPOCH=%d\n%s\n", strings.TrimSpace(string(ver)), baseEpoch, strings.Join(r.argv("TARGET"), "\n"))
	key := hex.EncodeToString(h.Sum(nil))[:16]
	out := filepath.Join(cache, s.Name+"-"+key+".tar")

	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	// One lock per key: a parallel build (make image and the test) waits
	// for the first mmdebstrap instead of running its own.
	lock, err := os.OpenFile(out+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}

	tmp := strings.TrimSuffix(out, ".tar") + ".tmp.tar"
	fmt.Fprintf(os.Stderr, "image: building the %s root filesystem with mmdebstrap (%s) into %s ...\n", s.Image, strings.Join(s.Packages, " "), out)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "mmdebstrap", r.argv(tmp)...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", baseEpoch))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// On an interrupt mmdebstrap unmounts what it mounted in its chroot and
	// removes its temporary directory; SIGKILL would leave them behind.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("mmdebstrap: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "image: %s root filesystem built in %s\n", s.Image, time.Since(start).Round(time.Second))
	return out, nil
}
