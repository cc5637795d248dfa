// Package render builds the typed objects of one database's agent:
// ServiceAccount, Role, RoleBinding and Deployment. It does no I/O.
package render

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
)

// The agent's container. Its object names, labels and Leases are in
// pkg/contract, since the agent and the plugin look them up too.
const (
	// ScratchDir is the agent's writable emptyDir (the root filesystem is read-only).
	ScratchDir = "/stash-tmp"
	// TempDir is TMPDIR in the container: restic's temporary packs go
	// there, so it must be on the scratch volume. The agent creates it.
	TempDir = ScratchDir + "/tmp"
	// MetricsPort serves /metrics, /healthz and /readyz.
	MetricsPort = 8080
	// AgentCommand is the agent binary on the image's PATH.
	AgentCommand = "stash-agent"
	// AgentUID is the non-root user the agent runs as.
	AgentUID = 65534
)

// AgentInput is what one agent is rendered from.
type AgentInput struct {
	AppBinding *appcatalog.AppBinding
	// Repositories the agent backs up to or restores from; their Secrets are granted by name.
	Repositories []*stashv1alpha1.Repository
	// Config supplies runtimeSettings, when set.
	Config      *stashv1beta1.BackupConfiguration
	Image       string
	Version     string
	Pushgateway string
	Replicas    int32
	// StallTimeout is the agent's --stall-timeout; 0 keeps its default.
	StallTimeout time.Duration
	// LeaseDuration is the agent's --lease-duration; 0 keeps its default.
	LeaseDuration time.Duration
	// HookExecPod opts in to exec hooks: the one Pod (in the agent's
	// namespace) the agent may exec into, by name. "" grants no exec.
	HookExecPod string
	// VerifyServerArgs are mariadbd options for the scratch server of
	// verifications (the agent's --verify-server-arg).
	VerifyServerArgs []string
}

// AgentObjects renders the ServiceAccount, Role, RoleBinding and Deployment.
func AgentObjects(in AgentInput) ([]runtime.Object, error) {
	ab := in.AppBinding
	if ab == nil || ab.Name == "" || ab.Namespace == "" {
		return nil, fmt.Errorf("render agent: an AppBinding with a name and namespace is required")
	}
	if in.Image == "" {
		return nil, fmt.Errorf("render agent for AppBinding %s/%s: no image", ab.Namespace, ab.Name)
	}
	if in.HookExecPod != "" {
		if errs := validation.IsDNS1123Subdomain(in.HookExecPod); len(errs) > 0 {
			return nil, fmt.Errorf("render agent for AppBinding %s/%s: hook exec pod %q is not a Pod name: %s", ab.Namespace, ab.Name, in.HookExecPod, strings.Join(errs, "; "))
		}
	}
	name := contract.AgentName(ab.Name)
	ns := ab.Namespace
	lbl := map[string]string{contract.LabelName: contract.AgentAppName, contract.LabelInstance: contract.ShortName(ab.Name, 63), contract.LabelManagedBy: contract.ManagedBy}
	if in.Version != "" {
		lbl[contract.LabelVersion] = contract.ShortName(in.Version, 63)
	}
	sel := map[string]string{contract.LabelName: contract.AgentAppName, contract.LabelInstance: contract.ShortName(ab.Name, 63)}
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: copyMap(lbl)}
	}

	sa := &corev1.ServiceAccount{
		TypeMeta:                     metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta:                   meta(),
		AutomountServiceAccountToken: ptr.To(true),
	}
	role := &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "Role"},
		ObjectMeta: meta(),
		Rules:      AgentRules(ab, in.Repositories, name),
	}
	if in.HookExecPod != "" {
		role.Rules = append(role.Rules, HookExecRule(in.HookExecPod))
	}
	rb := &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"},
		ObjectMeta: meta(),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}
	dep, err := deployment(in, meta(), sel, name)
	if err != nil {
		return nil, err
	}
	objs := []runtime.Object{sa, role, rb, dep}
	return append(objs, crossNamespace(in, name, lbl)...), nil
}

// crossNamespace grants the agent read access to Repositories in other
// namespaces, and to their Secrets by name, with a Role in each namespace.
// Whether the Repository allows that use is its usagePolicy's call, which
// the agent and the plugin check.
func crossNamespace(in AgentInput, saName string, lbl map[string]string) []runtime.Object {
	ab := in.AppBinding
	byNS := map[string][]*stashv1alpha1.Repository{}
	for _, r := range in.Repositories {
		if r.Namespace != "" && r.Namespace != ab.Namespace {
			byNS[r.Namespace] = append(byNS[r.Namespace], r)
		}
	}
	namespaces := make([]string, 0, len(byNS))
	for ns := range byNS {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)
	name := contract.ShortName("stash-agent-"+ab.Namespace+"-"+ab.Name, 63)
	var out []runtime.Object
	for _, ns := range namespaces {
		repos, secrets, repoLeases := map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, r := range byNS[ns] {
			repos[r.Name] = true
			secrets[r.Spec.Backend.StorageSecretName] = true
			repoLeases[contract.RepoLease(r.Name)] = true
		}
		om := metav1.ObjectMeta{Name: name, Namespace: ns, Labels: copyMap(lbl)}
		out = append(out,
			&rbacv1.Role{
				TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "Role"},
				ObjectMeta: om,
				Rules: []rbacv1.PolicyRule{
					{APIGroups: []string{stashv1alpha1.GroupVersion.Group}, Resources: []string{"repositories"}, ResourceNames: sortedKeys(repos), Verbs: []string{"get"}},
					{APIGroups: []string{stashv1alpha1.GroupVersion.Group}, Resources: []string{"repositories/status"}, ResourceNames: sortedKeys(repos), Verbs: []string{"get", "update", "patch"}},
					{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: sortedKeys(secrets), Verbs: []string{"get"}},
					{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
					{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: sortedKeys(repoLeases), Verbs: []string{"get", "update"}},
				},
			},
			&rbacv1.RoleBinding{
				TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"},
				ObjectMeta: *om.DeepCopy(),
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
				Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: saName, Namespace: ab.Namespace}},
			})
	}
	return out
}

// AgentRules is the agent's whole access: its own namespace, its own
// AppBinding, and Secrets by name. docs/security.md explains each rule.
func AgentRules(ab *appcatalog.AppBinding, repos []*stashv1alpha1.Repository, leaseName string) []rbacv1.PolicyRule {
	secrets := map[string]bool{}
	if ab.Spec.Secret != nil && ab.Spec.Secret.Name != "" {
		secrets[ab.Spec.Secret.Name] = true
	}
	repoLeases := map[string]bool{}
	for _, r := range repos {
		if r.Namespace != ab.Namespace && r.Namespace != "" {
			continue
		}
		if r.Spec.Backend.StorageSecretName != "" {
			secrets[r.Spec.Backend.StorageSecretName] = true
		}
		repoLeases[contract.RepoLease(r.Name)] = true
	}
	group := stashv1beta1.GroupVersion.Group
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{group}, Resources: []string{"backupconfigurations", "restoresessions", "repositories"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{group}, Resources: []string{"backupsessions", "verificationsessions"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		{APIGroups: []string{group}, Resources: []string{"backupconfigurations/status", "backupsessions/status", "restoresessions/status", "repositories/status", "verificationsessions/status"}, Verbs: []string{"get", "update", "patch"}},
		{APIGroups: []string{appcatalog.GroupVersion.Group}, Resources: []string{"appbindings"}, ResourceNames: []string{ab.Name}, Verbs: []string{"get", "watch", "list"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: append([]string{leaseName}, sortedKeys(repoLeases)...), Verbs: []string{"get", "update"}},
	}
	if len(secrets) > 0 {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: sortedKeys(secrets), Verbs: []string{"get"}})
	}
	return rules
}

// HookExecRule lets the agent exec into one Pod, by name, for exec hooks
// (opt-in with --hook-exec-pod). "get" is there because an exec request
// is upgraded from a GET on pods/exec as well as a POST (create).
func HookExecRule(pod string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/exec"}, ResourceNames: []string{pod}, Verbs: []string{"create", "get"}}
}

func deployment(in AgentInput, om metav1.ObjectMeta, sel map[string]string, name string) (*appsv1.Deployment, error) {
	ab := in.AppBinding
	args := []string{
		"run",
		"--appbinding=" + ab.Name,
		"--scratch-dir=" + ScratchDir,
		"--listen=:" + strconv.Itoa(MetricsPort),
		"--lease-name=" + name,
	}
	if in.Pushgateway != "" {
		args = append(args, "--pushgateway="+in.Pushgateway)
	}
	if in.StallTimeout > 0 {
		args = append(args, "--stall-timeout="+in.StallTimeout.String())
	}
	if in.LeaseDuration > 0 {
		args = append(args, "--lease-duration="+in.LeaseDuration.String())
	}
	if in.HookExecPod != "" {
		args = append(args, "--hook-exec-pod="+in.HookExecPod)
	}
	for _, v := range in.VerifyServerArgs {
		args = append(args, "--verify-server-arg="+v)
	}
	env := []corev1.EnvVar{
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "HOME", Value: ScratchDir},
		// Everything in the container writes its temporary files to the
		// scratch volume (the agent sets the same for its children anyway).
		{Name: "TMPDIR", Value: TempDir},
	}
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("192Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	sc := &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](AgentUID),
		RunAsGroup:               ptr.To[int64](AgentUID),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Privileged:               ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	podSC := &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To[int64](AgentUID),
		FSGroup:        ptr.To[int64](AgentUID),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	volumes := []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	mounts := []corev1.VolumeMount{{Name: "scratch", MountPath: ScratchDir}}
	repoVolumes, repoMounts, err := localVolumes(ab.Namespace, in.Repositories)
	if err != nil {
		return nil, err
	}
	volumes, mounts = append(volumes, repoVolumes...), append(mounts, repoMounts...)
	pod := corev1.PodSpec{
		ServiceAccountName:            name,
		AutomountServiceAccountToken:  ptr.To(true),
		SecurityContext:               podSC,
		Volumes:                       volumes,
		TerminationGracePeriodSeconds: ptr.To[int64](60),
		Containers: []corev1.Container{{
			Name:            "agent",
			Image:           in.Image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Command:         []string{AgentCommand},
			Args:            args,
			Env:             env,
			Resources:       res,
			SecurityContext: sc,
			VolumeMounts:    mounts,
			Ports:           []corev1.ContainerPort{{Name: "metrics", ContainerPort: MetricsPort, Protocol: corev1.ProtocolTCP}},
			LivenessProbe: &corev1.Probe{
				ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("metrics")}},
				PeriodSeconds: 20, FailureThreshold: 3, TimeoutSeconds: 5,
			},
			ReadinessProbe: &corev1.Probe{
				ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("metrics")}},
				PeriodSeconds: 10, TimeoutSeconds: 5,
			},
		}},
	}
	if cfg := in.Config; cfg != nil {
		if c := cfg.Spec.RuntimeSettings.Container; c != nil {
			ctr := &pod.Containers[0]
			if len(c.Resources.Limits) > 0 || len(c.Resources.Requests) > 0 {
				ctr.Resources = c.Resources
			}
			ctr.Env = append(ctr.Env, c.Env...)
			ctr.EnvFrom = append(ctr.EnvFrom, c.EnvFrom...)
			if c.SecurityContext != nil {
				ctr.SecurityContext = c.SecurityContext
			}
		}
		if p := cfg.Spec.RuntimeSettings.Pod; p != nil {
			pod.NodeSelector = p.NodeSelector
			pod.Tolerations = p.Tolerations
			pod.PriorityClassName = p.PriorityClassName
			pod.ImagePullSecrets = p.ImagePullSecrets
			if p.SecurityContext != nil {
				pod.SecurityContext = p.SecurityContext
			}
			if p.ServiceAccountName != "" {
				pod.ServiceAccountName = p.ServiceAccountName
			}
		}
		if cfg.Spec.TempDir.Medium != "" || cfg.Spec.TempDir.SizeLimit != nil {
			pod.Volumes[0].EmptyDir.Medium = cfg.Spec.TempDir.Medium
			pod.Volumes[0].EmptyDir.SizeLimit = cfg.Spec.TempDir.SizeLimit
			if spool := restoreSpool(cfg.Spec.TempDir.Medium, cfg.Spec.TempDir.SizeLimit); spool != "" {
				pod.Containers[0].Args = append(pod.Containers[0].Args, "--restore-spool="+spool)
			}
		}
	}
	replicas := in.Replicas
	if replicas <= 0 {
		replicas = 1
	}
	podLabels := copyMap(om.Labels)
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: appsv1.SchemeGroupVersion.String(), Kind: "Deployment"},
		ObjectMeta: om,
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec:       pod,
			},
		},
	}, nil
}

// localVolumes mounts the volume of each local Repository, whole, at its
// mountPath; the repository is the directory mountPath/subPath in it,
// where the agent runs restic (pkg/repository.URL). Repositories on one
// volume at one mountPath share the mount; two different volumes at one
// mountPath are an error, since one would silently take the other's data.
// A Repository of another namespace is mounted only when its volume is not
// bound to that namespace (a hostPath, not a PersistentVolumeClaim): the
// agent refuses the others with the reason.
func localVolumes(ns string, repos []*stashv1alpha1.Repository) ([]corev1.Volume, []corev1.VolumeMount, error) {
	var volumes []corev1.Volume
	var mounts []corev1.VolumeMount
	byPath := map[string]*stashv1alpha1.Repository{}
	for i, r := range repos {
		l := r.Spec.Backend.Local
		if l == nil || r.Namespace != "" && r.Namespace != ns && NamespacedVolume(l.VolumeSource) {
			continue
		}
		if prev, ok := byPath[l.MountPath]; ok {
			if !equality.Semantic.DeepEqual(prev.Spec.Backend.Local.VolumeSource, l.VolumeSource) {
				return nil, nil, fmt.Errorf("two Repositories, %s/%s and %s/%s, mount a volume at %s, but not the same one: give one of them another spec.backend.local.mountPath",
					prev.Namespace, prev.Name, r.Namespace, r.Name, l.MountPath)
			}
			continue
		}
		byPath[l.MountPath] = r
		vn := fmt.Sprintf("repo-%d", i)
		volumes = append(volumes, corev1.Volume{Name: vn, VolumeSource: l.VolumeSource})
		mounts = append(mounts, corev1.VolumeMount{Name: vn, MountPath: l.MountPath})
	}
	return volumes, mounts, nil
}

// NamespacedVolume says a volume refers to an object of the pod's own
// namespace, so a pod in another namespace cannot mount it.
func NamespacedVolume(v corev1.VolumeSource) bool {
	return v.PersistentVolumeClaim != nil || v.ConfigMap != nil || v.Secret != nil || v.Projected != nil
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// restoreSpool sizes the restore spool for a scratch volume the user
// bounded: half its size limit, and at most 256Mi in memory, since a
// memory-backed emptyDir counts against the pod's memory. "" keeps the
// agent's default (1Gi, within half the free space).
func restoreSpool(medium corev1.StorageMedium, limit *resource.Quantity) string {
	spool := int64(1 << 30)
	if limit != nil {
		spool = min(spool, limit.Value()/2)
	}
	if medium == corev1.StorageMediumMemory {
		spool = min(spool, 256<<20)
	}
	if spool == 1<<30 {
		return ""
	}
	return resource.NewQuantity(max(spool, 1<<20), resource.BinarySI).String()
}
