package dumptee

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubectl-stash/kubectl-stash/pkg/manifest"
)

// The trailer is found whatever the chunking, and only on a line of its own.
func TestFinderFindsTheTrailerInAnyChunking(t *testing.T) {
	m := &manifest.Manifest{Version: 1, Databases: []string{"shop"}, Tables: []manifest.Table{{Database: "shop", Name: "t", Rows: 2, Digest: "ab"}}}
	line, err := Trailer(Record{DumpArgs: []string{"--all-databases"}, Manifest: m})
	if err != nil {
		t.Fatal(err)
	}
	dump := []byte("-- MariaDB dump\nINSERT INTO `t` VALUES (1,'-- stash-manifest: no');\n-- stash-manifest \nSELECT 1;\n")
	dump = append(dump, line...)
	for _, size := range []int{1, 3, 7, 64, len(dump)} {
		var out bytes.Buffer
		f := NewFinder(&out)
		for i := 0; i < len(dump); i += size {
			if _, err := f.Write(dump[i:min(i+size, len(dump))]); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(out.Bytes(), dump) {
			t.Fatalf("chunk %d: the stream was changed", size)
		}
		r, found, err := f.Record()
		if err != nil || !found || r.Manifest.Tables[0].Rows != 2 || r.DumpArgs[0] != "--all-databases" {
			t.Fatalf("chunk %d: %+v %v %v", size, r, found, err)
		}
	}
	f := NewFinder(&bytes.Buffer{})
	_, _ = f.Write([]byte("no trailer here\n-- stash-manifest"))
	if _, found, _ := f.Record(); found {
		t.Error("a trailer found where there is none")
	}
}

// A failed dump exits with its code and writes no trailer; a good one
// passes its output through and appends the trailer, without the
// connection's option file in the recorded arguments.
func TestRunPassesTheDumpAndItsExitCode(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "fakedump")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf 'CREATE DATABASE /*!32312 IF NOT EXISTS*/ `d`;\\nUSE `d`;\\nCREATE TABLE `t` (\\n  `a` int\\n);\\nINSERT INTO `t` VALUES (1),(2);\\n'\nexit ${FAKE_EXIT:-0}\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := Run([]string{script, "--defaults-extra-file=/secret/client.cnf", "--all-databases"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	f := NewFinder(&bytes.Buffer{})
	_, _ = f.Write(out.Bytes())
	r, found, err := f.Record()
	if err != nil || !found {
		t.Fatalf("no trailer: %v\n%s", err, out.String())
	}
	if strings.Contains(strings.Join(r.DumpArgs, " "), "client.cnf") || len(r.Manifest.Tables) != 1 || r.Manifest.Tables[0].Rows != 2 {
		t.Errorf("record %+v", r)
	}
	t.Setenv("FAKE_EXIT", "3")
	out.Reset()
	if code := Run([]string{script}, &out, &errOut); code != 3 || strings.Contains(out.String(), Marker) {
		t.Errorf("a failed dump: exit %d, trailer written: %v", code, strings.Contains(out.String(), Marker))
	}
}

// What belongs to the source's connection and output never reaches the
// trailer; what shapes the content stays.
func TestRecordedArgsKeepOnlyTheContent(t *testing.T) {
	got := RecordedArgs([]string{"--defaults-extra-file=/s/c.cnf", "--single-transaction", "--host", "prod.db", "-P3307", "-u", "root",
		"--password=hunter2", "-phunter2", "--ssl-ca=/ca", "--result-file=/tmp/x.sql", "-r", "/tmp/y", "--master-data=2", "--source-data",
		"--databases", "shop", "crm", "--ignore-table=shop.audit", "--hex-blob", "--log-error=/s/err", "--protocol=tcp", "-C", "--where=id>5"})
	want := "--single-transaction --databases shop crm --ignore-table=shop.audit --hex-blob --where=id>5"
	if strings.Join(got, " ") != want {
		t.Errorf("recorded %q\nwant     %q", strings.Join(got, " "), want)
	}
}
