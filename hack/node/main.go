// Command stash-node runs the real test node's supervisor and its Pods'
// pause process; test/testenv/node starts it. Not a user-facing tool.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/kubectl-stash/kubectl-stash/test/testenv/node"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: stash-node supervise -dir DIR | pause")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "pause":
		node.Pause()
	case "supervise":
		fs := flag.NewFlagSet("supervise", flag.ExitOnError)
		dir := fs.String("dir", "", "the node's state directory (holds plan.json)")
		_ = fs.Parse(os.Args[2:])
		if err := supervise(*dir); err != nil {
			fmt.Fprintln(os.Stderr, "stash-node:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "stash-node: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// supervise runs the node with the API listener inherited as fd 3 until
// SIGTERM or SIGINT.
func supervise(dir string) error {
	l, err := net.FileListener(os.NewFile(3, "api-listener"))
	if err != nil {
		return fmt.Errorf("the API listener on fd 3: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return node.Supervise(ctx, dir, l, os.Stderr)
}
