package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
)

// capKey is the one extended attribute kept: file capabilities (ping's
// cap_net_raw, say) are behaviour; other xattrs are host noise.
const capKey = "SCHILY.xattr.security.capability"

// entry is one file of the layer: its header and where its content is,
// hdr.Size bytes at off in the base tarball, or the file at path.
type entry struct {
	hdr  tar.Header
	off  int64
	path string
}

// readBase lists the base tarball's entries with their content offsets,
// so the layer can be written in its own order without holding hundreds
// of megabytes in memory. After tar.Reader.Next the file is positioned at
// the entry's content: the reader reads headers block by block, without
// read-ahead, and skips content with Seek.
func readBase(f *os.File) ([]entry, error) {
	var out []entry
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeGNUSparse || hasPrefixKey(h.PAXRecords, "GNU.sparse.") {
			return nil, fmt.Errorf("%s: sparse files are not supported", h.Name)
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		name := cleanName(h.Name)
		if name == "" {
			continue // the root directory itself
		}
		e := entry{off: off, hdr: tar.Header{
			Typeflag: h.Typeflag,
			Name:     name,
			Size:     h.Size,
			Mode:     h.Mode & 0o7777,
			Uid:      h.Uid,
			Gid:      h.Gid,
			ModTime:  h.ModTime,
		}}
		switch h.Typeflag {
		case tar.TypeReg: // tar.Reader reports the old TypeRegA as TypeReg
		case tar.TypeLink:
			e.hdr.Linkname, e.hdr.Size = cleanName(h.Linkname), 0
		case tar.TypeSymlink:
			e.hdr.Linkname, e.hdr.Size = h.Linkname, 0
		case tar.TypeDir:
			e.hdr.Size = 0
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			continue // /dev is the container runtime's
		default:
			return nil, fmt.Errorf("%s: unsupported tar type %q", h.Name, h.Typeflag)
		}
		if c, ok := h.PAXRecords[capKey]; ok {
			e.hdr.PAXRecords = map[string]string{capKey: c}
		}
		out = append(out, e)
	}
}

func hasPrefixKey(m map[string]string, prefix string) bool {
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// cleanName is a tar name relative to the root, without ./ or a trailing /.
func cleanName(name string) string {
	name = path.Clean("/" + name)
	return strings.TrimPrefix(name, "/")
}

// removed says whether name or one of its parents matches a REMOVE glob,
// like `rm -rf GLOB` in the Dockerfile: /var/log/* removes /var/log/apt/x.
func removed(name string, globs []string) bool {
	for p := name; p != "." && p != "/"; p = path.Dir(p) {
		for _, g := range globs {
			if ok, _ := path.Match(strings.TrimPrefix(g, "/"), p); ok {
				return true
			}
		}
	}
	return false
}

// layerEntries is the layer's file list: the base without the spec's
// REMOVE paths, plus its DIRS and the added files (replacing base entries
// of the same path), hard links resolved so each group's first name in
// order holds the content, sorted by name.
func layerEntries(base []entry, s Spec, added map[string]string, epoch int64) ([]entry, error) {
	dirs := map[string]Dir{}
	for _, d := range s.Dirs {
		dirs[cleanName(d.Path)] = d
	}
	content := map[string]entry{} // every base regular file, removed or not, for hard links
	var out []entry
	for _, e := range base {
		if e.hdr.Typeflag == tar.TypeReg {
			content[e.hdr.Name] = e
		}
		_, isDir := dirs[e.hdr.Name]
		if removed(e.hdr.Name, s.Remove) || added["/"+e.hdr.Name] != "" || isDir {
			continue
		}
		if e.hdr.Name == "etc/machine-id" && e.hdr.Typeflag == tar.TypeReg {
			e.hdr.Size = 0 // an id copied into every container would be shared by all
		}
		out = append(out, e)
	}
	have := map[string]bool{}
	for _, e := range out {
		have[e.hdr.Name] = true
	}
	// add appends e after the parent directories it lacks (root's, 0755).
	add := func(e entry) {
		var parents []string
		for dir := path.Dir(e.hdr.Name); dir != "." && !have[dir]; dir = path.Dir(dir) {
			have[dir] = true
			parents = append(parents, dir)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			out = append(out, entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: parents[i], Mode: 0o755, ModTime: time.Unix(epoch, 0)}})
		}
		have[e.hdr.Name] = true
		out = append(out, e)
	}
	for _, name := range slices.Sorted(maps.Keys(dirs)) { // parents first
		d := dirs[name]
		add(entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: d.Mode, Uid: d.UID, Gid: d.GID, ModTime: time.Unix(epoch, 0)}})
	}
	for dest, src := range added {
		fi, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		add(entry{path: src, hdr: tar.Header{
			Typeflag: tar.TypeReg, Name: cleanName(dest), Size: fi.Size(), Mode: 0o755, ModTime: time.Unix(epoch, 0),
		}})
	}
	if err := resolveHardlinks(out, content); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].hdr.Name < out[j].hdr.Name })
	return out, nil
}

// resolveHardlinks makes the first name (in sorted order) of every hard
// link group the regular file and the others links to it: a link must
// follow its target in the archive, and sorting may move the target of
// the base tarball after a link, or REMOVE may have dropped it.
func resolveHardlinks(entries []entry, content map[string]entry) error {
	groups := map[string][]int{} // target -> indexes of the group's entries
	for i, e := range entries {
		switch e.hdr.Typeflag {
		case tar.TypeLink:
			if _, ok := content[e.hdr.Linkname]; !ok {
				return fmt.Errorf("%s: hard link to %s, which is no regular file", e.hdr.Name, e.hdr.Linkname)
			}
			groups[e.hdr.Linkname] = append(groups[e.hdr.Linkname], i)
		}
	}
	for i, e := range entries {
		if _, linked := groups[e.hdr.Name]; linked && e.hdr.Typeflag == tar.TypeReg && e.path == "" {
			groups[e.hdr.Name] = append(groups[e.hdr.Name], i)
		}
	}
	for target, idx := range groups {
		first := idx[0]
		for _, i := range idx {
			if entries[i].hdr.Name < entries[first].hdr.Name {
				first = i
			}
		}
		src := content[target]
		for _, i := range idx {
			name := entries[i].hdr.Name
			if i == first {
				entries[i] = src
			} else {
				entries[i].hdr = src.hdr
				entries[i].hdr.Typeflag, entries[i].hdr.Size = tar.TypeLink, 0
				entries[i].path, entries[i].off = "", 0
			}
			entries[i].hdr.Name = name
		}
		for _, i := range idx {
			if i != first {
				entries[i].hdr.Linkname = entries[first].hdr.Name
			}
		}
	}
	return nil
}

// blob is a content-addressed file of the OCI layout.
type blob struct {
	path   string
	digest string // sha256:...
	size   int64
}

// writeLayer writes the layer as a gzipped tar to dst and returns it and
// its diff ID (the digest of the uncompressed tar, the config's rootfs).
// Every header is rebuilt: sorted names, numeric uid/gid without names,
// mtime clamped to epoch, no access or change times; gzip's header has no
// name and no time. The same entries give the same bytes.
func writeLayer(dst string, base *os.File, entries []entry, epoch int64) (blob, string, error) {
	f, err := os.Create(dst)
	if err != nil {
		return blob{}, "", err
	}
	defer f.Close()
	zsum, tsum := sha256.New(), sha256.New()
	counter := &countWriter{w: io.MultiWriter(f, zsum)}
	zw, err := gzip.NewWriterLevel(counter, gzip.DefaultCompression)
	if err != nil {
		return blob{}, "", err
	}
	tw := tar.NewWriter(io.MultiWriter(zw, tsum))
	for _, e := range entries {
		if err := writeEntry(tw, base, e, epoch); err != nil {
			return blob{}, "", fmt.Errorf("%s: %w", e.hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return blob{}, "", err
	}
	if err := zw.Close(); err != nil {
		return blob{}, "", err
	}
	if err := f.Close(); err != nil {
		return blob{}, "", err
	}
	b := blob{path: dst, digest: "sha256:" + hex.EncodeToString(zsum.Sum(nil)), size: counter.n}
	return b, "sha256:" + hex.EncodeToString(tsum.Sum(nil)), nil
}

func writeEntry(tw *tar.Writer, base *os.File, e entry, epoch int64) error {
	h := e.hdr
	if h.ModTime.Unix() > epoch || h.ModTime.IsZero() {
		h.ModTime = time.Unix(epoch, 0)
	}
	h.ModTime = time.Unix(h.ModTime.Unix(), 0) // whole seconds: no PAX mtime
	if h.Typeflag == tar.TypeDir {
		h.Name += "/"
	}
	if err := tw.WriteHeader(&h); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeReg || h.Size == 0 {
		return nil
	}
	var r io.Reader = io.NewSectionReader(base, e.off, h.Size)
	if e.path != "" {
		f, err := os.Open(e.path)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	n, err := io.Copy(tw, io.LimitReader(r, h.Size))
	if err == nil && n != h.Size {
		err = fmt.Errorf("copied %d of %d bytes (changed while building?)", n, h.Size)
	}
	return err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
