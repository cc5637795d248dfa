package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
)

// BackupConfiguration says what to back up, where, when, and what to keep.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=backupconfigurations,singular=backupconfiguration,shortName=bc,categories={stash,appscode,all}
// +kubebuilder:printcolumn:name="Task",type="string",JSONPath=".spec.task.name"
// +kubebuilder:printcolumn:name="Schedule",type="string",JSONPath=".spec.schedule"
// +kubebuilder:printcolumn:name="Paused",type="boolean",JSONPath=".spec.paused"
// +kubebuilder:printcolumn:name="Phase",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Recoverable-Until",type="date",JSONPath=".status.pointInTimeRecovery.lastRecoverableTime",priority=0
// +kubebuilder:printcolumn:name="Verified",type="date",JSONPath=".status.verification.lastVerifiedTime",priority=1
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type BackupConfiguration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BackupConfigurationSpec   `json:"spec,omitempty"`
	Status BackupConfigurationStatus `json:"status,omitempty"`
}

// BackupConfigurationList is a list of BackupConfigurations.
//
// +kubebuilder:object:root=true
type BackupConfigurationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackupConfiguration `json:"items"`
}

// BackupConfigurationSpec is the desired backup.
type BackupConfigurationSpec struct {
	// Schedule is a cron expression (5 fields, or @every 30s, @hourly, ...),
	// optionally prefixed with CRON_TZ=Zone. Empty means trigger-only.
	// +optional
	Schedule string `json:"schedule,omitempty"`
	// +kubebuilder:default=Restic
	// +optional
	Driver Driver `json:"driver,omitempty"`
	// +kubebuilder:validation:Required
	Repository RepositoryRef `json:"repository"`
	// Task to run; when empty it comes from the AppBinding.
	// +optional
	Task TaskRef `json:"task,omitempty"`
	// +kubebuilder:validation:Required
	Target *BackupTarget `json:"target"`
	// +optional
	RetentionPolicy v1alpha1.RetentionPolicy `json:"retentionPolicy,omitempty"`
	// Paused stops new scheduled sessions.
	// +optional
	Paused bool `json:"paused,omitempty"`
	// BackupHistoryLimit is how many finished sessions to keep.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	BackupHistoryLimit *int32 `json:"backupHistoryLimit,omitempty"`
	// TimeOut bounds one session, as a Go duration (30m, 2h).
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	TimeOut string `json:"timeOut,omitempty"`
	// +optional
	RetryConfig *RetryConfig `json:"retryConfig,omitempty"`
	// +optional
	RuntimeSettings RuntimeSettings `json:"runtimeSettings,omitempty"`
	// +optional
	TempDir EmptyDirSettings `json:"tempDir,omitempty"`
	// +optional
	Hooks *BackupHooks `json:"hooks,omitempty"`
}

// BackupTarget is the object backed up.
type BackupTarget struct {
	// +optional
	Alias string `json:"alias,omitempty"`
	// +kubebuilder:validation:Required
	Ref TargetRef `json:"ref"`
	// +optional
	Paths []string `json:"paths,omitempty"`
	// +optional
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// +optional
	SnapshotClassName string `json:"snapshotClassName,omitempty"`
	// +optional
	Exclude []string `json:"exclude,omitempty"`
	// +optional
	Args []string `json:"args,omitempty"`
}

// RetryConfig retries a failed session.
type RetryConfig struct {
	// +kubebuilder:validation:Minimum=0
	MaxRetry int32 `json:"maxRetry"`
	// +optional
	Delay metav1.Duration `json:"delay,omitempty"`
}

// EmptyDirSettings configure the agent's scratch space.
type EmptyDirSettings struct {
	// +optional
	Medium corev1.StorageMedium `json:"medium,omitempty"`
	// +optional
	SizeLimit *resource.Quantity `json:"sizeLimit,omitempty"`
	// +optional
	DisableCaching bool `json:"disableCaching,omitempty"`
}

// BackupHooks run around a backup.
type BackupHooks struct {
	// +optional
	PreBackup *Handler `json:"preBackup,omitempty"`
	// +optional
	PostBackup *PostHook `json:"postBackup,omitempty"`
}

// BackupInvokerPhase is a BackupConfiguration's phase.
// +kubebuilder:validation:Enum=Invalid;Ready;NotReady
type BackupInvokerPhase string

const (
	BackupInvokerInvalid  BackupInvokerPhase = "Invalid"
	BackupInvokerReady    BackupInvokerPhase = "Ready"
	BackupInvokerNotReady BackupInvokerPhase = "NotReady"
)

// BackupConfigurationStatus is written by the agent.
type BackupConfigurationStatus struct {
	// +optional
	Phase BackupInvokerPhase `json:"phase,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// NextSchedule is the next slot the agent will run.
	// +optional
	NextSchedule *metav1.Time `json:"nextSchedule,omitempty"`
	// LastSuccessfulSession names the newest Succeeded session.
	// +optional
	LastSuccessfulSession string `json:"lastSuccessfulSession,omitempty"`
	// +optional
	LastSuccessTime *metav1.Time `json:"lastSuccessTime,omitempty"`
	// PointInTimeRecovery is the binlog archive's state, when the
	// stash.appscode.com/pitr annotation turns it on.
	// +optional
	PointInTimeRecovery *PITRStatus `json:"pointInTimeRecovery,omitempty"`
	// Verification is the last verification of this config's backups.
	// +optional
	Verification *VerificationStatus `json:"verification,omitempty"`
}

// PITRStatus says how far the binlog archive reaches and what a restore
// to a point in time can do now.
type PITRStatus struct {
	// FirstRecoverableTime is the earliest time a restore can reach: the
	// oldest full backup the archive continues without a gap.
	// +optional
	FirstRecoverableTime *metav1.Time `json:"firstRecoverableTime,omitempty"`
	// LastRecoverableTime is the latest: the archive holds every event
	// the server wrote up to it.
	// +optional
	LastRecoverableTime *metav1.Time `json:"lastRecoverableTime,omitempty"`
	// LastArchivedPosition is file:offset of the end of the archive.
	// +optional
	LastArchivedPosition string `json:"lastArchivedPosition,omitempty"`
	// LastArchivedGTID is the last archived transaction's GTID.
	// +optional
	LastArchivedGTID string `json:"lastArchivedGTID,omitempty"`
	// LastEventTime is the time of the last archived event.
	// +optional
	LastEventTime *metav1.Time `json:"lastEventTime,omitempty"`
	// ArchivedBytes is the size of the archived binlog files.
	// +optional
	ArchivedBytes int64 `json:"archivedBytes,omitempty"`
	// Gaps are stretches of time the archive does not cover.
	// +optional
	Gaps []PITRGap `json:"gaps,omitempty"`
}

// PITRGap is a stretch of time whose binlog events were not archived.
type PITRGap struct {
	From metav1.Time `json:"from"`
	// +optional
	To     *metav1.Time `json:"to,omitempty"`
	Reason string       `json:"reason"`
}
