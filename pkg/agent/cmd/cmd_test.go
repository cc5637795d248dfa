package cmd

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestRunExitsAtOnceWithoutItsTools: an image without restic fails when
// the agent starts, naming the binary, the PATH and the fix, before it
// serves /readyz (so it is never ready).
func TestRunExitsAtOnceWithoutItsTools(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("PATH", empty)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := New()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs([]string{"run", "--namespace=ns", "--appbinding=db", "--scratch-dir=" + t.TempDir(), "--listen=" + addr, "--restic="})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err = c.ExecuteContext(ctx)
	if err == nil {
		t.Fatal("the agent started without restic")
	}
	for _, w := range []string{"restic", "PATH=" + empty, "make image"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to fail", d)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("something serves %s: the agent listened before its tools were checked", addr)
	}
}
