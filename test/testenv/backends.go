package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// RestServer is a restic rest-server without authentication.
type RestServer struct {
	URL     string
	Dir     string
	Process *Process
}

func startRestServer(ctx context.Context, dir, binDir string, detach bool) (*RestServer, error) {
	bin, err := lookBin(binDir, "rest-server")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	r := &RestServer{URL: "http://" + hostPort(port), Dir: filepath.Join(dir, "rest-data")}
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return nil, err
	}
	r.Process, err = start(dir, "rest-server", bin, []string{"--path", r.Dir, "--listen", hostPort(port), "--no-auth"}, nil, detach)
	if err != nil {
		return nil, err
	}
	return r, r.Process.waitReady(ctx, 30*time.Second, tcpReady(hostPort(port)))
}

// S3Server is a versitygw gateway on a posix directory.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:port
	Dir       string
	AccessKey string
	SecretKey string
	Process   *Process
}

func startS3(ctx context.Context, dir, binDir string, detach bool) (*S3Server, error) {
	bin, err := lookBin(binDir, "versitygw")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	s := &S3Server{Endpoint: "http://" + hostPort(port), Dir: filepath.Join(dir, "s3-data"), AccessKey: "stashtest", SecretKey: randomPassword()}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, err
	}
	// Credentials go in the environment, never on the command line.
	env := []string{"ROOT_ACCESS_KEY_ID=" + s.AccessKey, "ROOT_SECRET_ACCESS_KEY=" + s.SecretKey}
	s.Process, err = start(dir, "versitygw", bin, []string{"--port", hostPort(port), "posix", s.Dir}, env, detach)
	if err != nil {
		return nil, err
	}
	return s, s.Process.waitReady(ctx, 30*time.Second, tcpReady(hostPort(port)))
}

// CreateBucket makes a bucket as a directory of the posix backend.
func (s *S3Server) CreateBucket(name string) error {
	if len(name) < 3 {
		return fmt.Errorf("bucket %q: names need at least 3 characters", name)
	}
	return os.MkdirAll(filepath.Join(s.Dir, name), 0o755)
}

// Pushgateway is a Prometheus Pushgateway.
type Pushgateway struct {
	URL     string
	Process *Process
}

func startPushgateway(ctx context.Context, dir, binDir string, detach bool) (*Pushgateway, error) {
	bin, err := lookBin(binDir, "pushgateway")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := &Pushgateway{URL: "http://" + hostPort(port)}
	p.Process, err = start(dir, "pushgateway", bin, []string{"--web.listen-address=" + hostPort(port)}, nil, detach)
	if err != nil {
		return nil, err
	}
	return p, p.Process.waitReady(ctx, 30*time.Second, httpOK(http.DefaultClient, p.URL+"/-/ready"))
}
