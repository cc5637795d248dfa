package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// restrictedNamespace makes a namespace that enforces the restricted Pod
// Security Standard, as a careful platform team would.
func restrictedNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	if _, err := s.kube.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createSecret(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
	if _, err := s.kube.CoreV1().Secrets(ns).Create(context.Background(), sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// mariadb is a MariaDB server Pod from the image `make image` builds, behind
// a Service of the same name.
type mariadb struct {
	ns, name, password string
}

// startMariaDB runs the server as a restricted Pod with its data on an
// emptyDir, and waits until it answers. A restore of --all-databases brings
// the source's users along, so servers that take each other's dumps share
// one root password.
func startMariaDB(t *testing.T, ns, name string) *mariadb {
	t.Helper()
	ctx := context.Background()
	m := &mariadb{ns: ns, name: name, password: "root-" + ns + "-Pw#1"}
	createSecret(t, ns, name+"-root", map[string]string{"password": m.password})
	uid := s.images.mariadbUID
	labels := map[string]string{"app": name}
	empty := func(n string) corev1.Volume {
		return corev1.Volume{Name: n, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(uid), RunAsGroup: ptr.To(uid), FSGroup: ptr.To(uid),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "mariadb", Image: s.images.mariadbRef, ImagePullPolicy: corev1.PullIfNotPresent,
				Env: []corev1.EnvVar{{Name: "MARIADB_ROOT_PASSWORD", ValueFrom: &corev1.EnvVarSource{
					SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name + "-root"}, Key: "password"}}}},
				Ports: []corev1.ContainerPort{{Name: "mysql", ContainerPort: 3306}},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "data", MountPath: "/var/lib/mysql"}, {Name: "run", MountPath: "/run/mysqld"}, {Name: "tmp", MountPath: "/tmp"},
				},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("mysql")}}, PeriodSeconds: 1},
			}},
			Volumes: []corev1.Volume{empty("data"), empty("run"), empty("tmp")},
		},
	}
	if _, err := s.kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("MariaDB pod %s/%s: %v", ns, name, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "mysql", Port: 3306, TargetPort: intstr.FromString("mysql")}}},
	}
	if _, err := s.kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodReady(t, ns, name, 2*time.Minute)
	return m
}

// sql runs statements in the server's Pod as root; the password stays in
// the Pod's environment.
func (m *mariadb) sql(t *testing.T, stmts string) string {
	t.Helper()
	r := kubectl(t, stmts, "exec", "-i", "-n", m.ns, m.name, "-c", "mariadb", "--",
		"sh", "-c", `MYSQL_PWD="$MARIADB_ROOT_PASSWORD" exec mariadb -uroot -N --batch`)
	return mustOK(t, r, "SQL in "+m.ns+"/"+m.name)
}

// checksums is CHECKSUM TABLE ... EXTENDED of every base table in dbs.
func (m *mariadb) checksums(t *testing.T, dbs ...string) map[string]string {
	t.Helper()
	list := "'" + strings.Join(dbs, "','") + "'"
	tables := strings.Fields(m.sql(t, "SELECT CONCAT(table_schema,'.',table_name) FROM information_schema.tables WHERE table_schema IN ("+list+") AND table_type='BASE TABLE' ORDER BY 1"))
	if len(tables) == 0 {
		t.Fatalf("no tables in %s on %s", list, m.name)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(m.sql(t, "CHECKSUM TABLE "+strings.Join(tables, ", ")+" EXTENDED")), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			out[f[0]] = f[1]
		}
	}
	return out
}

func waitPodReady(t *testing.T, ns, name string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	ok := poll(timeout, func() bool {
		p, err := s.kube.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		last = p
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("pod %s/%s not ready after %s: %s", ns, name, timeout, podSummary(last))
	}
	return last
}

// podSummary says why a Pod is not running, for failure messages.
func podSummary(p *corev1.Pod) string {
	if p == nil {
		return "no pod"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s", p.Status.Phase)
	for _, c := range p.Status.ContainerStatuses {
		fmt.Fprintf(&b, "; %s restarts=%d", c.Name, c.RestartCount)
		if w := c.State.Waiting; w != nil {
			fmt.Fprintf(&b, " waiting %s: %s", w.Reason, w.Message)
		}
		if te := c.LastTerminationState.Terminated; te != nil {
			fmt.Fprintf(&b, " last exit %d %s: %s", te.ExitCode, te.Reason, te.Message)
		}
	}
	return b.String()
}

// s3 is a versitygw gateway running on the node, on the node's address.
type s3 struct {
	endpoint, dir, access, secret string
}

func startS3(t *testing.T) *s3 {
	t.Helper()
	dir := filepath.Join(s.node.Plan.Dir, "s3-"+strings.ToLower(t.Name()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	port := 9000 + len(dir)%1000
	x := &s3{endpoint: fmt.Sprintf("http://%s:%d", s.node.Plan.NodeIP(), port), dir: dir, access: "stashnode", secret: "node-S3-secret-" + fmt.Sprint(time.Now().UnixNano())}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := s.node.Command(ctx, filepath.Join(testRoot(), "bin", "versitygw"), "--port", fmt.Sprintf("%s:%d", s.node.Plan.NodeIP(), port), "posix", dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+x.access, "ROOT_SECRET_ACCESS_KEY="+x.secret)
	logf, err := os.Create(filepath.Join(s.node.Plan.Path("logs"), "versitygw-"+t.Name()+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait(); logf.Close() })
	if !poll(30*time.Second, func() bool {
		return s.node.Command(context.Background(), "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", s.node.Plan.NodeIP(), port)).Run() == nil
	}) {
		t.Fatalf("versitygw on the node did not answer")
	}
	return x
}

func (x *s3) bucket(t *testing.T, name string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(x.dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
}

// hostPathPVC makes a PersistentVolume on a directory of the node, owned by
// the agent's user, and a claim bound to it.
func hostPathPVC(t *testing.T, ns, name string, uid int) string {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(s.node.Plan.Dir, "pv", ns+"-"+name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	pvName := ns + "-" + name
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              "",
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: ptr.To(corev1.HostPathDirectory)}},
		},
	}
	if _, err := s.kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(""),
			VolumeName:       pvName,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")}},
		},
	}
	if _, err := s.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// restic runs the pinned restic here against a repository on the node.
func restic(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := s.node.Command(context.Background(), filepath.Join(testRoot(), "bin", "restic"), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("restic %v: %v: %s", args, err, stderr)
	}
	return string(out)
}

// poll calls cond every 250ms until it holds or timeout passes.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
}
