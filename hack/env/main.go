// Command env starts (`up`) and stops (`down`) the local environment of
// test/testenv in the background, for `make up`, `make down` and `make demo`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
	"github.com/kubectl-stash/kubectl-stash/test/testenv/node"
)

func main() {
	dir := flag.String("dir", ".stash-env", "where the environment keeps its data, logs and kubeconfig")
	dbs := flag.Int("mariadb", 2, "how many MariaDB servers to start")
	onNode := flag.Bool("node", false, "start the real single-node cluster (kubelet, containerd) instead of the process-mode parts")
	var imgs []string
	flag.Func("image", "OCI archive to import into the real node (repeatable)", func(v string) error { imgs = append(imgs, v); return nil })
	flag.Parse()
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fail(err)
	}
	switch flag.Arg(0) {
	case "up":
		for _, f := range []string{"state.json", "plan.json"} {
			if _, err := os.Stat(filepath.Join(abs, f)); err == nil {
				fail(fmt.Errorf("an environment is already up in %s: run `make down` first", abs))
			}
		}
		if *onNode {
			if err := nodeUp(abs, imgs); err != nil {
				fail(err)
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		e, err := testenv.Start(ctx, testenv.Options{Dir: abs, MariaDBs: *dbs, RestServer: true, S3: true, Pushgateway: true, Detach: true})
		if err != nil {
			if e != nil {
				e.Stop()
			}
			fail(err)
		}
		st := e.State()
		if err := st.Write(); err != nil {
			e.Stop()
			fail(err)
		}
		// Connection details for scripts (the demo); 0600 because it holds test passwords.
		conn := map[string]any{"s3": e.S3, "rest": e.Rest, "pushgateway": e.Pushgateway}
		var dbsOut []map[string]any
		for _, m := range e.MariaDBs {
			dbsOut = append(dbsOut, map[string]any{"name": m.Name, "host": m.Host, "port": m.Port, "user": m.User, "password": m.Password, "optionFile": m.OptionFile()})
		}
		conn["mariadb"] = dbsOut
		b, _ := json.MarshalIndent(conn, "", "  ")
		if err := os.WriteFile(filepath.Join(abs, "connections.json"), b, 0o600); err != nil {
			fail(err)
		}
		fmt.Printf("environment is up; logs in %s\n", abs)
		for k, v := range st.Endpoints {
			fmt.Printf("  %-16s %s\n", k, v)
		}
		fmt.Printf("export KUBECONFIG=%s\n", st.Kubeconfig)
	case "agent":
		// Runs the agent of a rendered Deployment in the foreground (see testenv.StartAgent).
		ns, dep := flag.Arg(1), flag.Arg(2)
		if ns == "" || dep == "" {
			fail(fmt.Errorf("usage: env agent NAMESPACE DEPLOYMENT"))
		}
		if err := runAgent(abs, ns, dep); err != nil {
			fail(err)
		}
	case "down":
		if err := node.StopDetached(abs); err != nil {
			fail(err)
		}
		if err := testenv.StopDetached(abs); err != nil {
			fail(err)
		}
		fmt.Println("environment is down")
	default:
		fail(fmt.Errorf("usage: env [-dir D] [-node [-image ARCHIVE]...] up | down | agent NAMESPACE DEPLOYMENT"))
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "error: %v\n", err)
	os.Exit(1)
}
