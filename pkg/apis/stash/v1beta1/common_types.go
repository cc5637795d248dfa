package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Driver is how a target is backed up. Only Restic is run by this agent.
// +kubebuilder:validation:Enum=Restic;VolumeSnapshotter
type Driver string

const (
	DriverRestic            Driver = "Restic"
	DriverVolumeSnapshotter Driver = "VolumeSnapshotter"
)

// RepositoryRef names a Repository, optionally in another namespace.
type RepositoryRef struct {
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// TaskRef names a Task and the params substituted into its Functions.
type TaskRef struct {
	// Name of the Task. Empty means: take it from the AppBinding.
	// +optional
	Name string `json:"name,omitempty"`
	// +optional
	Params []Param `json:"params,omitempty"`
}

// Param is one name=value substituted into ${name} placeholders.
type Param struct {
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:validation:Required
	Value string `json:"value"`
}

// TargetRef names the object to back up, usually an AppBinding.
type TargetRef struct {
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinLength=1
	APIVersion string `json:"apiVersion"`
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinLength=1
	Kind string `json:"kind"`
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// RuntimeSettings tune the agent's pod and container.
type RuntimeSettings struct {
	// +optional
	Container *ContainerRuntimeSettings `json:"container,omitempty"`
	// +optional
	Pod *PodRuntimeSettings `json:"pod,omitempty"`
}

// ContainerRuntimeSettings apply to the agent's container.
type ContainerRuntimeSettings struct {
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`
	// +optional
	EnvFrom []corev1.EnvFromSource `json:"envFrom,omitempty"`
	// +optional
	SecurityContext *corev1.SecurityContext `json:"securityContext,omitempty"`
	// Nice is the niceness of the dump and restic processes.
	// +optional
	Nice *NiceSettings `json:"nice,omitempty"`
	// IONice is the IO class and priority of the dump and restic processes.
	// +optional
	IONice *IONiceSettings `json:"ionice,omitempty"`
}

// NiceSettings sets process niceness.
type NiceSettings struct {
	// +kubebuilder:validation:Minimum=-20
	// +kubebuilder:validation:Maximum=19
	// +optional
	Adjustment *int32 `json:"adjustment,omitempty"`
}

// IONiceSettings sets the IO scheduling class.
type IONiceSettings struct {
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3
	// +optional
	Class *int32 `json:"class,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=7
	// +optional
	ClassData *int32 `json:"classData,omitempty"`
}

// PodRuntimeSettings apply to the agent's pod.
type PodRuntimeSettings struct {
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`
	// +optional
	SecurityContext *corev1.PodSecurityContext `json:"securityContext,omitempty"`
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
}

// HookExecutionPolicy says when a post hook runs.
// +kubebuilder:validation:Enum=Always;OnFailure;OnSuccess;OnFinalRetryFailure
type HookExecutionPolicy string

const (
	ExecuteAlways              HookExecutionPolicy = "Always"
	ExecuteOnFailure           HookExecutionPolicy = "OnFailure"
	ExecuteOnSuccess           HookExecutionPolicy = "OnSuccess"
	ExecuteOnFinalRetryFailure HookExecutionPolicy = "OnFinalRetryFailure"
)

// Handler is a hook action: exactly one of exec, httpGet, httpPost or tcpSocket.
type Handler struct {
	// +optional
	Exec *corev1.ExecAction `json:"exec,omitempty"`
	// +optional
	HTTPGet *corev1.HTTPGetAction `json:"httpGet,omitempty"`
	// +optional
	HTTPPost *HTTPPostAction `json:"httpPost,omitempty"`
	// +optional
	TCPSocket *corev1.TCPSocketAction `json:"tcpSocket,omitempty"`
	// ContainerName is where an exec hook runs.
	// +optional
	ContainerName string `json:"containerName,omitempty"`
}

// HTTPPostAction posts a body to a URL.
type HTTPPostAction struct {
	// +optional
	Path string             `json:"path,omitempty"`
	Port intstr.IntOrString `json:"port"`
	// +optional
	Host string `json:"host,omitempty"`
	// +optional
	Scheme corev1.URIScheme `json:"scheme,omitempty"`
	// +optional
	HTTPHeaders []corev1.HTTPHeader `json:"httpHeaders,omitempty"`
	// +optional
	Body string `json:"body,omitempty"`
	// +optional
	Form []FormEntry `json:"form,omitempty"`
}

// FormEntry is one form field of an HTTP POST hook.
type FormEntry struct {
	Key string `json:"key"`
	// +optional
	Values []string `json:"values,omitempty"`
}

// PostHook is a hook with an execution policy.
type PostHook struct {
	Handler `json:",inline"`
	// +kubebuilder:default=Always
	// +optional
	ExecutionPolicy HookExecutionPolicy `json:"executionPolicy,omitempty"`
}

// Condition types and reasons written by the agent. The types are Stash's.
const (
	// BackupConfiguration
	ConditionBackupTargetFound    = "BackupTargetFound"
	ConditionStashSidecarInjected = "StashSidecarInjected"
	ConditionCronJobCreated       = "CronJobCreated"
	ConditionRepositoryFound      = "RepositoryFound"
	ConditionBackendSecretFound   = "BackendSecretFound"
	ConditionValidationPassed     = "ValidationPassed"
	// BackupSession
	ConditionRetentionPolicyApplied           = "RetentionPolicyApplied"
	ConditionBackendRepositoryInitialized     = "BackendRepositoryInitialized"
	ConditionRepositoryIntegrityVerified      = "RepositoryIntegrityVerified"
	ConditionRepositoryMetricsPushed          = "RepositoryMetricsPushed"
	ConditionBackupSkipped                    = "BackupSkipped"
	ConditionBackupHistoryCleaned             = "BackupHistoryCleaned"
	ConditionBackupExecutorEnsured            = "BackupExecutorEnsured"
	ConditionPreBackupHookExecutionSucceeded  = "PreBackupHookExecutionSucceeded"
	ConditionPostBackupHookExecutionSucceeded = "PostBackupHookExecutionSucceeded"
	ConditionDeadlineExceeded                 = "DeadlineExceeded"
	ConditionBackupDisrupted                  = "BackupDisrupted"
	// ConditionHistoryBackedUp: whether the history of the system-versioned
	// tables dumped is in the backup (True), or only their current rows
	// (False, with the tables and why).
	ConditionHistoryBackedUp = "HistoryBackedUp"
	// ConditionConsistentDump: whether every table dumped is in one
	// consistent snapshot (False lists the non-transactional tables a
	// --single-transaction dump reads without one).
	ConditionConsistentDump = "ConsistentDump"
	// RestoreSession
	ConditionRestoreTargetFound                = "RestoreTargetFound"
	ConditionStashInitContainerInjected        = "StashInitContainerInjected"
	ConditionRestoreJobCreated                 = "RestoreJobCreated"
	ConditionRestoreCompleted                  = "RestoreCompleted"
	ConditionRestoreExecutorEnsured            = "RestoreExecutorEnsured"
	ConditionMetricsPushed                     = "MetricsPushed"
	ConditionPreRestoreHookExecutionSucceeded  = "PreRestoreHookExecutionSucceeded"
	ConditionPostRestoreHookExecutionSucceeded = "PostRestoreHookExecutionSucceeded"
	// Both session kinds: False while the agent's Role does not let it
	// read a Secret the session needs; the session waits Pending.
	ConditionAccessGranted = "AccessGranted"
	// ConditionBinlogArchiving is True while the binlog archive is
	// current, False with the reason and the fix when it is not.
	ConditionBinlogArchiving = "BinlogArchiving"
	// ConditionBinlogContinuous is False while a gap in the binlog archive
	// lies after the oldest full backup a restore could start from.
	ConditionBinlogContinuous = "BinlogContinuous"
	// ConditionPointInTimeRestored says what a restore to a point in
	// time replayed on top of its base snapshot.
	ConditionPointInTimeRestored = "PointInTimeRestored"
	// ConditionCredentialsValid: after a restore brought the snapshot's
	// accounts, whether the AppBinding's Secret still logs in.
	ConditionCredentialsValid = "CredentialsValid"
	// ConditionTargetReadOnly says whether the restore held its target
	// read-only for every other client, and whether it let go.
	ConditionTargetReadOnly = "TargetReadOnly"
	// ConditionVerified says whether a verification proved its snapshot
	// restores into the data that was backed up.
	ConditionVerified = "Verified"
	// ConditionVerificationScheduled says whether a config's verification
	// annotations are valid, and when verifications start.
	ConditionVerificationScheduled = "VerificationScheduled"
)

// Pre- and post-backup action names (Stash's).
const (
	ActionInitializeBackendRepository = "InitializeBackendRepository"
	ActionApplyRetentionPolicy        = "ApplyRetentionPolicy"
	ActionVerifyRepositoryIntegrity   = "VerifyRepositoryIntegrity"
	ActionSendRepositoryMetrics       = "SendRepositoryMetrics"
)
