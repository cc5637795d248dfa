package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/render"
	"github.com/kubectl-stash/kubectl-stash/pkg/version"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

const (
	testVersion = "v9.8.7"
	mariadbRef  = "localhost/stash-test/mariadb:10.11"
	mariadbUID  = 999
)

// ociImage is an image archive as hack/image writes it, its blobs checked
// against their digests.
type ociImage struct {
	archive     string
	digest      string // the manifest's, the image digest
	annotations map[string]string
	config      struct {
		Created string `json:"created"`
		Config  struct {
			User       string
			Env        []string
			Entrypoint []string
		} `json:"config"`
	}
	layer   string         // the layer blob, written out
	entries []*tar.Header  // the layer's, in order
	byName  map[string]int // index in entries, by name without a trailing /
}

// TestImageArchives builds both images as `make image` does (hack/image,
// twice: the same inputs must give the same bytes), then checks what is in
// them and runs it: the agent's binaries and client tools as the agent's
// user, and the MariaDB image's entrypoint as mysql on a read-only root.
func TestImageArchives(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mmdebstrap builds the root filesystem in a chroot and the test runs the images' programs with chroot")
	}
	root := testenv.RepoRoot()
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		run(t, root, nil, "hack/install-image-tools.sh")
	}
	// One epoch for both builds: commits landing in between would move it.
	epoch := strings.TrimSpace(run(t, root, nil, "git", "log", "-1", "--format=%ct"))
	bin := filepath.Join(t.TempDir(), "image")
	run(t, root, nil, "go", "build", "-o", bin, "./hack/image")
	ldflags := makeVars(t, root, testVersion, "abc1234", "LDFLAGS")["LDFLAGS"]
	build := func() string {
		out := t.TempDir()
		start := time.Now()
		t.Log(run(t, root, []string{"SOURCE_DATE_EPOCH=" + epoch}, bin, "-version", testVersion, "-ldflags", ldflags,
			"-images", "agent,mariadb", "-out", out))
		t.Logf("built in %s", time.Since(start).Round(time.Second))
		return out
	}
	first, second := build(), build()
	archives := map[string]*ociImage{}
	for _, name := range []string{"stash-agent", "stash-mariadb"} {
		file := fmt.Sprintf("%s-image_%s_linux_amd64.tar", name, testVersion)
		a, b := fileSum(t, filepath.Join(first, file)), fileSum(t, filepath.Join(second, file))
		if a != b {
			t.Errorf("%s: two builds of the same inputs differ: sha256 %s, %s", file, a, b)
		}
		archives[name] = readImage(t, filepath.Join(first, file)) // the same bytes: the same digest
	}
	agent, mariadb := archives["stash-agent"], archives["stash-mariadb"]
	epochN, _ := strconv.ParseInt(epoch, 10, 64)

	for _, img := range archives {
		t.Run("layer "+filepath.Base(img.archive), func(t *testing.T) { checkLayer(t, img, epochN) })
	}
	t.Run("agent", func(t *testing.T) { checkAgent(t, root, agent) })
	t.Run("mariadb", func(t *testing.T) { checkMariaDB(t, root, mariadb) })
	t.Run("ctr import", func(t *testing.T) { checkImport(t, root, agent, mariadb) })
}

// checkLayer: entries sorted by path, mtimes clamped, no apt lists, cache
// or logs.
func checkLayer(t *testing.T, img *ociImage, epoch int64) {
	for i, h := range img.entries {
		if i > 0 && strings.TrimSuffix(img.entries[i-1].Name, "/") >= strings.TrimSuffix(h.Name, "/") {
			t.Errorf("entries not sorted: %s before %s", img.entries[i-1].Name, h.Name)
		}
		if h.ModTime.Unix() > epoch || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %v (epoch %d), atime %v, ctime %v, owner names %q/%q", h.Name, h.ModTime, epoch, h.AccessTime, h.ChangeTime, h.Uname, h.Gname)
		}
		for _, dir := range []string{"var/lib/apt/lists/", "var/cache/apt/", "var/log/"} {
			if strings.HasPrefix(h.Name, dir) && h.Name != dir {
				t.Errorf("%s is in the image", h.Name)
			}
		}
	}
	if created := time.Unix(epoch, 0).UTC().Format(time.RFC3339); img.config.Created != created {
		t.Errorf("config created %s, want %s", img.config.Created, created)
	}
}

func checkAgent(t *testing.T, root string, img *ociImage) {
	saved := version.Version
	version.Version = testVersion
	want := version.AgentImage()
	version.Version = saved
	if img.annotations["io.containerd.image.name"] != want || img.annotations["org.opencontainers.image.ref.name"] != testVersion {
		t.Errorf("index annotations %v, want io.containerd.image.name=%s (the plugin's default) and org.opencontainers.image.ref.name=%s", img.annotations, want, testVersion)
	}
	c := img.config.Config
	if uid := strconv.Itoa(render.AgentUID); c.User != uid+":"+uid {
		t.Errorf("config User %q, want %s:%s (render.AgentUID)", c.User, uid, uid)
	}
	if strings.Join(c.Entrypoint, " ") != render.AgentCommand {
		t.Errorf("config Entrypoint %q, want [%s]", c.Entrypoint, render.AgentCommand)
	}
	if len(c.Env) != 1 || !strings.Contains(c.Env[0]+":", ":/usr/local/bin:") {
		t.Errorf("config Env %q, want PATH with /usr/local/bin", c.Env)
	}
	for _, f := range []string{"usr/local/bin/stash-agent", "usr/local/bin/restic"} {
		if h := img.header(f); h == nil || h.Typeflag != tar.TypeReg || h.Mode&0o755 != 0o755 {
			t.Errorf("%s: %+v, want an executable file", f, h)
		}
	}
	for _, f := range []string{"usr/bin/mariadb-dump", "usr/bin/mysqldump", "usr/bin/mariadb", "usr/bin/mysql"} {
		if img.header(f) == nil {
			t.Errorf("no %s", f)
		}
	}

	// Run them as the agent's user in the image's root filesystem.
	dir := extract(t, img)
	resticVersion, _ := goModRequire(t, filepath.Join(root, "hack", "tools", "restic", "go.mod"), "github.com/restic/restic")
	user := fmt.Sprintf("--userspec=%d:%d", render.AgentUID, render.AgentUID)
	for argv, want := range map[string]string{
		"/usr/local/bin/restic version":      "restic " + strings.TrimPrefix(resticVersion, "v"),
		"/usr/local/bin/stash-agent version": testVersion,
		"mariadb-dump --version":             "mariadb-dump",
		"mysqldump --version":                "Distrib 10.11",
		"mysql --version":                    "Distrib 10.11",
	} {
		out := run(t, "/", []string{"PATH=" + strings.TrimPrefix(c.Env[0], "PATH=")},
			append([]string{"chroot", user, dir}, strings.Fields(argv)...)...)
		if !strings.Contains(out, want) {
			t.Errorf("%s printed %q, want %q", argv, out, want)
		}
	}
}

func checkMariaDB(t *testing.T, root string, img *ociImage) {
	// A fixed test tag; fully qualified, so the CRI does not read it as docker.io/...
	ref := recipe(t, root, "mariadb")["REF"]
	if !strings.HasPrefix(ref, "localhost/") || !strings.HasSuffix(ref, ":10.11") {
		t.Errorf("mariadb.env REF %q, want localhost/...:10.11", ref)
	}
	if img.annotations["io.containerd.image.name"] != ref || img.annotations["org.opencontainers.image.ref.name"] != "10.11" {
		t.Errorf("index annotations %v, want %s", img.annotations, ref)
	}
	uid := strconv.Itoa(mariadbUID)
	if c := img.config.Config; c.User != uid+":"+uid || strings.Join(c.Entrypoint, " ") != "stash-mariadb-entrypoint" {
		t.Errorf("config User %q Entrypoint %q, want %s:%s and [stash-mariadb-entrypoint]", c.User, c.Entrypoint, uid, uid)
	}
	for _, d := range []string{"run/mysqld", "var/lib/mysql"} {
		if h := img.header(d); h == nil || h.Typeflag != tar.TypeDir || h.Uid != mariadbUID || h.Gid != mariadbUID {
			t.Errorf("%s: %+v, want a directory of %d:%d", d, h, mariadbUID, mariadbUID)
		}
	}
	for _, h := range img.entries {
		if strings.HasPrefix(h.Name, "var/lib/mysql/") && h.Name != "var/lib/mysql/" {
			t.Errorf("%s: the image's datadir is not empty", h.Name)
		}
	}
	if _, err := exec.LookPath("mariadb"); err != nil {
		run(t, root, nil, "hack/install-mariadb.sh")
	}
	dir := extract(t, img)
	if passwd, _ := os.ReadFile(filepath.Join(dir, "etc", "passwd")); !strings.Contains(string(passwd), "\nmysql:x:999:999:") {
		t.Errorf("/etc/passwd has no mysql:x:999:999:\n%s", passwd)
	}

	// Pod-like: the root filesystem read-only, emptyDirs at the datadir and
	// /run/mysqld, running as mysql, the password with SQL quote characters.
	data, sock := t.TempDir(), t.TempDir()
	for _, d := range []string{data, sock} {
		if err := os.Chown(d, mariadbUID, mariadbUID); err != nil {
			t.Fatal(err)
		}
	}
	const password = `p'ss\word"`
	port := freePort(t)
	start := func() (*exec.Cmd, *bytes.Buffer) {
		script := `set -e
r=$1
mount --bind "$r" "$r"
mount -o remount,bind,ro "$r"
mount --rbind /dev "$r/dev"
mount --rbind /proc "$r/proc"
mount --bind "$2" "$r/var/lib/mysql"
mount --bind "$3" "$r/run/mysqld"
exec /usr/sbin/chroot --userspec=999:999 "$r" /usr/local/bin/stash-mariadb-entrypoint --port="$4"`
		cmd := exec.Command("unshare", "--mount", "/bin/sh", "-c", script, "sh", dir, data, sock, strconv.Itoa(port))
		cmd.Env = []string{"MARIADB_ROOT_PASSWORD=" + password, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
		return cmd, &log
	}
	// stop sends what the kubelet sends: SIGTERM, to the process the
	// entrypoint exec'd into.
	stop := func(cmd *exec.Cmd, log *bytes.Buffer) {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("mariadbd did not stop on SIGTERM within 60s:\n%s", log)
		}
	}
	sql := func(user, pass, query string) (string, error) {
		args := []string{"--no-defaults", "--protocol=tcp", "-h127.0.0.1", "-P" + strconv.Itoa(port), "-u" + user,
			"--batch", "--skip-column-names", "--connect-timeout=2", "-e", query}
		if pass != "" {
			args = append(args, "-p"+pass)
		}
		out, err := exec.Command("mariadb", args...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	waitReady := func(log *bytes.Buffer) {
		deadline := time.Now().Add(90 * time.Second)
		for {
			if _, err := sql("root", password, "SELECT 1"); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("root@127.0.0.1 cannot connect to port %d within 90s:\n%s", port, log)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	cmd, log := start()
	waitReady(log)
	if out, err := sql("root", password, "SELECT CURRENT_USER(); SHOW GRANTS"); err != nil ||
		!strings.Contains(out, "root@%") || !strings.Contains(out, "GRANT ALL PRIVILEGES ON *.* TO `root`@`%`") || !strings.Contains(out, "WITH GRANT OPTION") {
		t.Errorf("root over TCP: %v\n%s", err, out)
	}
	if out, err := sql("root", "", "SELECT 1"); err == nil {
		t.Errorf("root connects without a password: %s", out)
	}
	if out, err := sql("root", password, "SELECT COUNT(*) FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host NOT IN ('localhost', '%'))"); err != nil || out != "0" {
		t.Errorf("anonymous or other root accounts: %v %s", err, out)
	}
	if _, err := sql("root", password, "CREATE DATABASE kept; CREATE TABLE kept.t (id INT PRIMARY KEY); INSERT INTO kept.t VALUES (7)"); err != nil {
		t.Errorf("write: %v", err)
	}
	stop(cmd, log)
	if !strings.Contains(log.String(), "initializing /var/lib/mysql") {
		t.Errorf("the first start did not initialize the datadir:\n%s", log)
	}

	// A restart keeps the datadir: no second initialization.
	cmd, log = start()
	waitReady(log)
	if out, err := sql("root", password, "SELECT id FROM kept.t"); err != nil || out != "7" {
		t.Errorf("after a restart: %v %q", err, out)
	}
	stop(cmd, log)
	if strings.Contains(log.String(), "initializing") {
		t.Errorf("the second start initialized the datadir again:\n%s", log)
	}
}

// checkImport loads both archives into a private containerd with ctr, the
// way a node gets images without a registry, and finds them under their
// references and digests.
func checkImport(t *testing.T, root string, imgs ...*ociImage) {
	run(t, root, nil, "hack/tools.sh", "containerd", "ctr")
	dir, err := os.MkdirTemp("", "stash-ctr-") // short: the socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "c.sock")
	config := fmt.Sprintf("version = 3\nroot = %q\nstate = %q\n[grpc]\n  address = %q\n", filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	containerd := exec.CommandContext(ctx, filepath.Join(root, "bin", "containerd"), "--config", filepath.Join(dir, "config.toml"))
	var log bytes.Buffer
	containerd.Stdout, containerd.Stderr = &log, &log
	containerd.Cancel = func() error { return containerd.Process.Signal(syscall.SIGTERM) }
	containerd.WaitDelay = 20 * time.Second
	if err := containerd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); containerd.Wait() })
	ctr := func(args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(root, "bin", "ctr"), append([]string{"--address", sock, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
		return string(out), err
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, err := ctr("version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer within 30s:\n%s", log.String())
		}
	}
	for _, img := range imgs {
		if out, err := ctr("images", "import", img.archive); err != nil {
			t.Fatalf("ctr images import %s: %v\n%s\ncontainerd:\n%s", img.archive, err, out, log.String())
		}
	}
	out, err := ctr("images", "ls")
	if err != nil {
		t.Fatalf("ctr images ls: %v\n%s", err, out)
	}
	for _, img := range imgs {
		want := img.annotations["io.containerd.image.name"]
		found := false
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == want && f[2] == img.digest {
				found = true
			}
		}
		if !found {
			t.Errorf("ctr images ls lists no %s at %s:\n%s", want, img.digest, out)
		}
		if out, err := ctr("images", "check", "name=="+want); err != nil || !strings.Contains(out, "complete") {
			t.Errorf("ctr images check %s: %v\n%s", want, err, out)
		}
	}
}

// readImage reads an image archive: index, manifest, config and layer,
// each blob checked against its digest.
func readImage(t *testing.T, archive string) *ociImage {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img := &ociImage{archive: archive, byName: map[string]int{}}
	small := map[string][]byte{}
	blobDir := t.TempDir()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		sum := sha256.New()
		var r io.Reader = io.TeeReader(tr, sum)
		if h.Size < 1<<20 {
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			small[h.Name] = b
		} else {
			out, err := os.Create(filepath.Join(blobDir, filepath.Base(h.Name)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, r); err != nil {
				t.Fatal(err)
			}
			out.Close()
		}
		if hexSum, ok := strings.CutPrefix(h.Name, "blobs/sha256/"); ok && hex.EncodeToString(sum.Sum(nil)) != hexSum {
			t.Errorf("%s: %s does not match its digest", archive, h.Name)
		}
	}
	if string(small["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("%s: oci-layout %q", archive, small["oci-layout"])
	}
	var idx struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			MediaType   string            `json:"mediaType"`
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	mustJSON(t, small["index.json"], &idx)
	if idx.MediaType != "application/vnd.oci.image.index.v1+json" || len(idx.Manifests) != 1 ||
		idx.Manifests[0].MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("%s: index.json %s", archive, small["index.json"])
	}
	img.digest, img.annotations = idx.Manifests[0].Digest, idx.Manifests[0].Annotations
	var man struct {
		Config struct{ MediaType, Digest string }   `json:"config"`
		Layers []struct{ MediaType, Digest string } `json:"layers"`
	}
	mustJSON(t, small[blobPath(img.digest)], &man)
	if man.Config.MediaType != "application/vnd.oci.image.config.v1+json" || len(man.Layers) != 1 ||
		man.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Fatalf("%s: manifest %s", archive, small[blobPath(img.digest)])
	}
	mustJSON(t, small[blobPath(man.Config.Digest)], &img.config)
	img.layer = filepath.Join(blobDir, strings.TrimPrefix(man.Layers[0].Digest, "sha256:"))
	img.entries = layerHeaders(t, img.layer)
	for i, h := range img.entries {
		img.byName[strings.TrimSuffix(h.Name, "/")] = i
	}
	return img
}

func (img *ociImage) header(name string) *tar.Header {
	if i, ok := img.byName[name]; ok {
		return img.entries[i]
	}
	return nil
}

func layerHeaders(t *testing.T, layer string) []*tar.Header {
	t.Helper()
	f, err := os.Open(layer)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []*tar.Header
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
}

// extract unpacks the layer as root, owners and modes kept, as a runtime does.
func extract(t *testing.T, img *ociImage) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "/", nil, "tar", "--numeric-owner", "--same-owner", "--same-permissions", "-xzf", img.layer, "-C", dir)
	return dir
}

func blobPath(digest string) string { return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:") }

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// run runs argv in dir with env added and returns its output, failing the
// test when it fails.
func run(t *testing.T, dir string, env []string, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}
