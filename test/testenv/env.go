package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options say which parts to start.
type Options struct {
	// BinDir holds the tools built by `make tools`; defaults to <repo>/bin.
	BinDir string
	// Dir holds data and logs; a temporary directory when empty.
	Dir string
	// MariaDBs is how many MariaDB servers to start (named db0, db1, ...).
	MariaDBs    int
	RestServer  bool
	S3          bool
	Pushgateway bool
	// Detach starts servers in their own session so they outlive the caller
	// (`make up`); Stop still stops them.
	Detach bool
}

// Env is a running environment.
type Env struct {
	Dir         string
	BinDir      string
	Control     *ControlPlane
	MariaDBs    []*MariaDB
	Rest        *RestServer
	S3          *S3Server
	Pushgateway *Pushgateway

	stopOnce sync.Once
}

// Start starts the control plane and the requested parts. On error,
// whatever was started is stopped.
func Start(ctx context.Context, o Options) (_ *Env, err error) {
	if o.BinDir == "" {
		o.BinDir = filepath.Join(RepoRoot(), "bin")
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "stash-env-"); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	e := &Env{Dir: o.Dir, BinDir: o.BinDir}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	// Start the slow control plane alongside the other parts.
	var wg sync.WaitGroup
	var cpErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.Control, cpErr = startControlPlane(ctx, o.Dir, o.BinDir, o.Detach)
	}()
	var errs []error
	for i := 0; i < o.MariaDBs; i++ {
		m, err := startMariaDB(ctx, o.Dir, fmt.Sprintf("db%d", i), MariaDBOptions{}, o.Detach)
		if err != nil {
			errs = append(errs, err)
			break
		}
		e.MariaDBs = append(e.MariaDBs, m)
	}
	if o.RestServer && len(errs) == 0 {
		if e.Rest, err = startRestServer(ctx, o.Dir, o.BinDir, o.Detach); err != nil {
			errs = append(errs, err)
		}
	}
	if o.S3 && len(errs) == 0 {
		if e.S3, err = startS3(ctx, o.Dir, o.BinDir, o.Detach); err != nil {
			errs = append(errs, err)
		}
	}
	if o.Pushgateway && len(errs) == 0 {
		if e.Pushgateway, err = startPushgateway(ctx, o.Dir, o.BinDir, o.Detach); err != nil {
			errs = append(errs, err)
		}
	}
	wg.Wait()
	errs = append(errs, cpErr)
	if err := errors.Join(errs...); err != nil {
		return e, err
	}
	return e, nil
}

// AddMariaDB starts one more MariaDB server with options (TLS, say).
func (e *Env) AddMariaDB(ctx context.Context, name string, o MariaDBOptions) (*MariaDB, error) {
	m, err := startMariaDB(ctx, e.Dir, name, o, false)
	if err != nil {
		return nil, err
	}
	e.MariaDBs = append(e.MariaDBs, m)
	return m, nil
}

// Stop stops everything, newest first.
func (e *Env) Stop() {
	e.stopOnce.Do(func() {
		if e.Pushgateway != nil {
			e.Pushgateway.Process.Stop(5 * time.Second)
		}
		if e.S3 != nil {
			e.S3.Process.Stop(5 * time.Second)
		}
		if e.Rest != nil {
			e.Rest.Process.Stop(5 * time.Second)
		}
		for _, m := range e.MariaDBs {
			m.Stop()
		}
		e.Control.Stop()
	})
}

// ForTest starts an environment for a test and stops it at cleanup. The
// directory with every log is kept, and named, when the test failed.
func ForTest(t testing.TB, o Options) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e, err := Start(ctx, o)
	if err != nil {
		if e != nil {
			t.Logf("environment logs kept in %s", e.Dir)
		}
		t.Fatalf("start test environment: %v", err)
	}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() || os.Getenv("STASH_KEEP_ENV") != "" {
			t.Logf("environment logs kept in %s", e.Dir)
			return
		}
		_ = os.RemoveAll(e.Dir)
	})
	return e
}

// State is what `make up` records so that `make down` can stop it.
type State struct {
	Dir        string            `json:"dir"`
	Kubeconfig string            `json:"kubeconfig"`
	Pids       map[string]int    `json:"pids"`
	Endpoints  map[string]string `json:"endpoints"`
}

// State describes a detached environment.
func (e *Env) State() State {
	s := State{Dir: e.Dir, Kubeconfig: e.Control.Kubeconfig, Pids: map[string]int{}, Endpoints: map[string]string{"kube-apiserver": e.Control.URL}}
	s.Pids["etcd"] = e.Control.Etcd.Pid()
	s.Pids["kube-apiserver"] = e.Control.APIServer.Pid()
	for _, m := range e.MariaDBs {
		s.Pids["mariadb-"+m.Name] = m.Process.Pid()
		s.Endpoints["mariadb-"+m.Name] = m.Addr()
	}
	if e.Rest != nil {
		s.Pids["rest-server"] = e.Rest.Process.Pid()
		s.Endpoints["rest-server"] = e.Rest.URL
	}
	if e.S3 != nil {
		s.Pids["versitygw"] = e.S3.Process.Pid()
		s.Endpoints["s3"] = e.S3.Endpoint
	}
	if e.Pushgateway != nil {
		s.Pids["pushgateway"] = e.Pushgateway.Process.Pid()
		s.Endpoints["pushgateway"] = e.Pushgateway.URL
	}
	return s
}

// WriteState saves the state as dir/state.json.
func (s State) Write() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(s.Dir, "state.json"), b)
}

// StopDetached stops the processes recorded in dir/state.json and removes dir.
func StopDetached(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s/state.json: %w", dir, err)
	}
	for _, pid := range s.Pids {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range s.Pids {
		for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil {
			time.Sleep(100 * time.Millisecond)
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	return os.RemoveAll(dir)
}

// RepoRoot finds the module root from the working directory.
func RepoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "cmd", "kubectl-stash")); err == nil {
				return d
			}
		}
	}
	return dir
}
