package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
	"github.com/kubectl-stash/kubectl-stash/test/testenv/node"
)

// Fixture ports on the node's address.
const (
	nodeS3Port          = 9000
	nodePushgatewayPort = 9091
)

// nodeUp starts the real node in the background with an S3 gateway and a
// Pushgateway on its address, imports the images `make image` built, and
// writes connections.json for the demo.
func nodeUp(dir string, imgs []string) error {
	root := testenv.RepoRoot()
	bin := filepath.Join(root, "bin")
	sup := filepath.Join(bin, "stash-node")
	if err := testenv.GoBuild(sup, "./hack/node"); err != nil {
		return err
	}
	key := make([]byte, 12)
	_, _ = rand.Read(key)
	access, secret := "stashdemo", "demo-"+hex.EncodeToString(key)
	s3Dir := filepath.Join(dir, "s3-data")
	if err := os.MkdirAll(filepath.Join(s3Dir, "demo-backups"), 0o700); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := node.Start(ctx, node.Options{
		BinDir: bin, Supervisor: sup, Dir: dir, Detach: true, Images: imgs,
		Fixtures: []node.Fixture{
			{Name: "versitygw", Bin: filepath.Join(bin, "versitygw"), Port: nodeS3Port,
				Args: []string{"--port", node.NodeIPVar + ":" + strconv.Itoa(nodeS3Port), "posix", s3Dir},
				Env:  []string{"ROOT_ACCESS_KEY_ID=" + access, "ROOT_SECRET_ACCESS_KEY=" + secret}},
			{Name: "pushgateway", Bin: filepath.Join(bin, "pushgateway"), Port: nodePushgatewayPort,
				Args: []string{"--web.listen-address=" + node.NodeIPVar + ":" + strconv.Itoa(nodePushgatewayPort)}},
		},
	})
	if err != nil {
		return err // Start stopped what it started; the logs stay in dir
	}
	ip := n.Plan.NodeIP()
	conn := map[string]any{
		"mode":        "node",
		"kubeconfig":  n.Kubeconfig,
		"s3":          map[string]string{"Endpoint": fmt.Sprintf("http://%s:%d", ip, nodeS3Port), "Dir": s3Dir, "AccessKey": access, "SecretKey": secret},
		"pushgateway": map[string]string{"URL": fmt.Sprintf("http://%s:%d", ip, nodePushgatewayPort)},
		"startTime":   n.StartTime.Round(time.Millisecond).String(),
	}
	b, _ := json.MarshalIndent(conn, "", "  ")
	// 0600: it holds the demo's S3 keys.
	if err := os.WriteFile(filepath.Join(dir, "connections.json"), b, 0o600); err != nil {
		return err
	}
	fmt.Printf("real node is up in %s (network namespace %s, node %s); state in %s\n",
		n.StartTime.Round(time.Millisecond), n.Plan.Netns, ip, dir)
	fmt.Printf("export KUBECONFIG=%s\n", n.Kubeconfig)
	return nil
}
