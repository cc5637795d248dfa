package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// gatherFiles returns the local file of each of the spec's FILES, by
// destination in the image: go: packages built as `make build` builds
// them, tool: the pinned tools hack/tools.sh builds and links into bin/,
// file: repository files as they are. Paths are relative to the
// repository root, the working directory.
func gatherFiles(ctx context.Context, s Spec, work, ldflags string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range s.Files {
		var (
			src string
			err error
		)
		switch f.Kind {
		case "go":
			src = filepath.Join(work, filepath.Base(f.Dest))
			err = goBuild(ctx, f.Source, ldflags, src)
		case "tool":
			src, err = tool(ctx, f.Source)
		case "file":
			src = f.Source
			_, err = os.Stat(src)
		}
		if err != nil {
			return nil, fmt.Errorf("%s (%s:%s): %w", f.Dest, f.Kind, f.Source, err)
		}
		out[f.Dest] = src
	}
	return out, nil
}

// goBuild builds pkg for linux/amd64 like `make build` (CGO_ENABLED=0,
// -trimpath, the Makefile's ldflags), with -buildvcs=false and GOAMD64
// pinned so neither a dirty work tree nor the environment changes a byte.
func goBuild(ctx context.Context, pkg, ldflags, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// tool runs hack/tools.sh NAME (a cached build of the pinned version, as
// the tests use) and returns the binary bin/NAME links to. tools.sh builds
// for this machine, so only a linux/amd64 machine can add it to the image.
func tool(ctx context.Context, name string) (string, error) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return "", fmt.Errorf("hack/tools.sh builds %s for %s/%s, the image is linux/amd64", name, runtime.GOOS, runtime.GOARCH)
	}
	cmd := exec.CommandContext(ctx, "hack/tools.sh", name)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(filepath.Join("bin", name))
}
