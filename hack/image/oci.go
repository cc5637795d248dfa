package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// OCI media types and annotations. containerd's importer (ctr images
// import, and so the kubelet's image store) reads index.json and names the
// image after io.containerd.image.name.
const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
	annImageName  = "io.containerd.image.name"
	annRefName    = "org.opencontainers.image.ref.name"
)

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type imageConfig struct {
	Created      string    `json:"created"`
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	Config       runConfig `json:"config"`
	RootFS       rootFS    `json:"rootfs"`
	History      []history `json:"history"`
}

type runConfig struct {
	User       string   `json:"User"`
	Env        []string `json:"Env"`
	Entrypoint []string `json:"Entrypoint"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type history struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// image is what writeImage made: the manifest digest is the image's
// digest, as containerd and registries show it.
type image struct {
	ref, digest, archive string
	size                 int64
}

// writeImage writes the OCI image layout of one single-layer image into a
// tar at dst: oci-layout, index.json and blobs/sha256/ (config, manifest,
// layer). Its JSON is encoding/json's (fixed field order, sorted map keys)
// and its tar entries are sorted with one mtime, so it is reproducible.
func writeImage(dst string, s Spec, ref string, layer blob, diffID string, epoch int64) (image, error) {
	created := time.Unix(epoch, 0).UTC().Format(time.RFC3339)
	cfg, err := json.Marshal(imageConfig{
		Created:      created,
		Architecture: "amd64",
		OS:           "linux",
		Config: runConfig{
			User:       s.User,
			Env:        []string{"PATH=" + s.Path},
			Entrypoint: s.Entrypoint,
		},
		RootFS: rootFS{Type: "layers", DiffIDs: []string{diffID}},
		History: []history{{Created: created, CreatedBy: fmt.Sprintf(
			"hack/image: mmdebstrap --variant=minbase --include=%s, then %s", strings.Join(s.Packages, ","), s.Image+".env's FILES")}},
	})
	if err != nil {
		return image{}, err
	}
	cfgDesc := descriptor{MediaType: mediaConfig, Digest: digestOf(cfg), Size: int64(len(cfg))}
	man, err := json.Marshal(manifest{
		SchemaVersion: 2,
		MediaType:     mediaManifest,
		Config:        cfgDesc,
		Layers:        []descriptor{{MediaType: mediaLayer, Digest: layer.digest, Size: layer.size}},
	})
	if err != nil {
		return image{}, err
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]
	manDesc := descriptor{
		MediaType:   mediaManifest,
		Digest:      digestOf(man),
		Size:        int64(len(man)),
		Platform:    &platform{Architecture: "amd64", OS: "linux"},
		Annotations: map[string]string{annImageName: ref, annRefName: tag},
	}
	idx, err := json.Marshal(index{SchemaVersion: 2, MediaType: mediaIndex, Manifests: []descriptor{manDesc}})
	if err != nil {
		return image{}, err
	}

	files := []archiveFile{
		{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{name: "index.json", data: idx},
		{name: blobName(cfgDesc.Digest), data: cfg},
		{name: blobName(manDesc.Digest), data: man},
		{name: blobName(layer.digest), path: layer.path, size: layer.size},
	}
	if err := writeTar(dst, files, epoch); err != nil {
		return image{}, err
	}
	fi, err := os.Stat(dst)
	if err != nil {
		return image{}, err
	}
	return image{ref: ref, digest: manDesc.Digest, archive: dst, size: fi.Size()}, nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blobName(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}

// archiveFile is one file of the image archive: data, or size bytes at path.
type archiveFile struct {
	name string
	data []byte
	path string
	size int64
}

// writeTar writes files, and their directories, sorted, as root-owned
// 0644/0755 entries with one mtime, to dst through a temporary file, so an
// interrupted build leaves no half archive under the final name.
func writeTar(dst string, files []archiveFile, epoch int64) error {
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	tw := tar.NewWriter(tmp)
	mtime := time.Unix(epoch, 0)
	dirs := map[string]bool{}
	for _, f := range files {
		if d := filepath.Dir(f.name); d != "." && !dirs[d] {
			for _, p := range []string{filepath.Dir(d), d} { // blobs/, blobs/sha256/
				if p != "." && !dirs[p] {
					dirs[p] = true
					h := &tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: mtime, Format: tar.FormatUSTAR}
					if err := tw.WriteHeader(h); err != nil {
						return err
					}
				}
			}
		}
		size := int64(len(f.data))
		if f.path != "" {
			size = f.size
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Size: size, Mode: 0o644, ModTime: mtime, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if err := copyFile(tw, f); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

func copyFile(w io.Writer, f archiveFile) error {
	if f.path == "" {
		_, err := w.Write(f.data)
		return err
	}
	r, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := io.Copy(w, r)
	if err == nil && n != f.size {
		err = fmt.Errorf("%d bytes, want %d", n, f.size)
	}
	return err
}
