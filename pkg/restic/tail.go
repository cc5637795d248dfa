package restic

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"strings"
)

// treeNode is one entry of a restic tree blob.
type treeNode struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Subtree string   `json:"subtree"`
	Content []string `json:"content"`
}

// Tail returns at least the last min bytes of a file of a snapshot (all of
// it when shorter), without reading the rest: it walks the snapshot's
// trees to the file's list of data blobs and fetches blobs from the end.
// Each step is one restic run (a key derivation, about a second), so it
// suits files whose tail is wanted from large dumps, such as the manifest
// line a dump ends with. more, when set, is asked after each blob whether
// the bytes so far are enough.
func (r *Repo) Tail(ctx context.Context, snapshot, filename string, min int, enough func([]byte) bool) ([]byte, error) {
	var snap struct {
		Tree string `json:"tree"`
	}
	if err := r.runJSON(ctx, "cat", []string{"cat", "snapshot", snapshot}, &snap); err != nil {
		return nil, err
	}
	tree := snap.Tree
	parts := strings.Split(strings.Trim(path.Clean("/"+filename), "/"), "/")
	var file *treeNode
	for i, name := range parts {
		var t struct {
			Nodes []treeNode `json:"nodes"`
		}
		if err := r.runJSON(ctx, "cat", []string{"cat", "blob", tree}, &t); err != nil {
			return nil, err
		}
		var found *treeNode
		for j := range t.Nodes {
			if t.Nodes[j].Name == name {
				found = &t.Nodes[j]
			}
		}
		switch {
		case found == nil:
			return nil, fmt.Errorf("restic: snapshot %s has no %s", snapshot, filename)
		case i < len(parts)-1 && found.Type != "dir":
			return nil, fmt.Errorf("restic: %s in snapshot %s is not a directory", name, snapshot)
		case i < len(parts)-1:
			tree = found.Subtree
		case found.Type != "file":
			return nil, fmt.Errorf("restic: %s in snapshot %s is not a file", filename, snapshot)
		default:
			file = found
		}
	}
	var tail []byte
	for i := len(file.Content) - 1; i >= 0; i-- {
		var b bytes.Buffer
		if err := r.run(ctx, "cat", []string{"cat", "blob", file.Content[i]}, nil, &b); err != nil {
			return nil, err
		}
		tail = append(b.Bytes(), tail...)
		if len(tail) >= min && (enough == nil || enough(tail)) {
			break
		}
	}
	return tail, nil
}
