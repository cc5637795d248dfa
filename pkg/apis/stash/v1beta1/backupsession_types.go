package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels Stash sets on a BackupSession; users and dashboards filter on them.
const (
	LabelInvokerKind = "stash.appscode.com/invoker-kind"
	LabelInvokerName = "stash.appscode.com/invoker-name"
)

// AnnotationCatchUp on a BackupConfiguration (a kubectl-stash extension)
// says what an agent does, when it starts leading, about slots missed while
// no agent ran: CatchUpOne (the default) runs one backup for the newest
// missed slot, CatchUpNone runs none. Never more than one.
const (
	AnnotationCatchUp = "stash.appscode.com/catch-up"
	CatchUpOne        = "one"
	CatchUpNone       = "none"
)

// BackupSession is one run of a BackupConfiguration.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=backupsessions,singular=backupsession,categories={stash,appscode,all}
// +kubebuilder:printcolumn:name="Invoker-Type",type="string",JSONPath=".spec.invoker.kind"
// +kubebuilder:printcolumn:name="Invoker-Name",type="string",JSONPath=".spec.invoker.name"
// +kubebuilder:printcolumn:name="Phase",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Duration",type="string",JSONPath=".status.sessionDuration"
// +kubebuilder:printcolumn:name="Size",type="string",JSONPath=".status.targets[0].stats[0].snapshots[0].totalSize"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type BackupSession struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BackupSessionSpec   `json:"spec,omitempty"`
	Status BackupSessionStatus `json:"status,omitempty"`
}

// BackupSessionList is a list of BackupSessions.
//
// +kubebuilder:object:root=true
type BackupSessionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackupSession `json:"items"`
}

// BackupSessionSpec names what invoked the session.
type BackupSessionSpec struct {
	// +kubebuilder:validation:Required
	Invoker BackupInvokerRef `json:"invoker"`
	// RetryLeft is how many retries remain after this session.
	// +kubebuilder:validation:Minimum=0
	// +optional
	RetryLeft int32 `json:"retryLeft,omitempty"`
}

// BackupInvokerRef names a BackupConfiguration (or BackupBatch).
type BackupInvokerRef struct {
	// +kubebuilder:default=stash.appscode.com
	// +optional
	APIGroup string `json:"apiGroup,omitempty"`
	// +kubebuilder:validation:Enum=BackupConfiguration;BackupBatch
	Kind string `json:"kind"`
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// BackupSessionPhase is a session's phase.
// +kubebuilder:validation:Enum=Pending;Skipped;Running;Succeeded;Failed;Unknown
type BackupSessionPhase string

const (
	BackupSessionPending   BackupSessionPhase = "Pending"
	BackupSessionSkipped   BackupSessionPhase = "Skipped"
	BackupSessionRunning   BackupSessionPhase = "Running"
	BackupSessionSucceeded BackupSessionPhase = "Succeeded"
	BackupSessionFailed    BackupSessionPhase = "Failed"
	BackupSessionUnknown   BackupSessionPhase = "Unknown"
)

// TargetPhase is one target's phase.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed
type TargetPhase string

const (
	TargetPending   TargetPhase = "Pending"
	TargetRunning   TargetPhase = "Running"
	TargetSucceeded TargetPhase = "Succeeded"
	TargetFailed    TargetPhase = "Failed"
)

// HostPhase is one host's result.
// +kubebuilder:validation:Enum=Succeeded;Failed;Running;Unknown
type HostPhase string

const (
	HostSucceeded HostPhase = "Succeeded"
	HostFailed    HostPhase = "Failed"
	HostRunning   HostPhase = "Running"
	HostUnknown   HostPhase = "Unknown"
)

// BackupSessionStatus is written by the agent that claimed the session.
type BackupSessionStatus struct {
	// +optional
	Phase BackupSessionPhase `json:"phase,omitempty"`
	// SessionDuration is the wall time of the session, e.g. 1m3s.
	// +optional
	SessionDuration string `json:"sessionDuration,omitempty"`
	// +optional
	SessionDeadline *metav1.Time `json:"sessionDeadline,omitempty"`
	// +optional
	Retried *bool `json:"retried,omitempty"`
	// +optional
	NextRetry *metav1.Time `json:"nextRetry,omitempty"`
	// +optional
	Targets []BackupTargetStatus `json:"targets,omitempty"`
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ClaimedBy is the agent instance running the session.
	// +optional
	ClaimedBy string `json:"claimedBy,omitempty"`
	// HeartbeatTime is when the agent running the session last showed it
	// is alive. A new leader settles a Running session of another agent
	// only once this has not changed for a lease duration.
	// +optional
	HeartbeatTime *metav1.Time `json:"heartbeatTime,omitempty"`
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Progress of the running backup, refreshed every few seconds.
	// +optional
	Progress *Progress `json:"progress,omitempty"`
	// Message is a one-line summary of the outcome, naming the fix on failure.
	// +optional
	Message string `json:"message,omitempty"`
}

// Progress of a running session.
type Progress struct {
	// +optional
	BytesDone int64 `json:"bytesDone,omitempty"`
	// +optional
	BytesTotal int64 `json:"bytesTotal,omitempty"`
	// +optional
	BytesPerSecond int64 `json:"bytesPerSecond,omitempty"`
	// +optional
	UpdateTime *metav1.Time `json:"updateTime,omitempty"`
	// Position is where a restore had got to in the dump at the last
	// update, e.g. "line 1204 (table `orders`)". It is set before the
	// first statement reaches the database, so a restore without it has
	// changed nothing.
	// +optional
	Position string `json:"position,omitempty"`
}

// BackupTargetStatus is one target's result.
type BackupTargetStatus struct {
	Ref TargetRef `json:"ref"`
	// +optional
	TotalHosts *int32 `json:"totalHosts,omitempty"`
	// +optional
	Phase TargetPhase `json:"phase,omitempty"`
	// +optional
	PreBackupActions []string `json:"preBackupActions,omitempty"`
	// +optional
	PostBackupActions []string `json:"postBackupActions,omitempty"`
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// +optional
	Stats []HostBackupStats `json:"stats,omitempty"`
}

// HostBackupStats is one host's backup result.
type HostBackupStats struct {
	// +optional
	Hostname string `json:"hostname,omitempty"`
	// +optional
	Phase HostPhase `json:"phase,omitempty"`
	// +optional
	Duration string `json:"duration,omitempty"`
	// +optional
	Error string `json:"error,omitempty"`
	// +optional
	Snapshots []SnapshotStats `json:"snapshots,omitempty"`
}

// SnapshotStats describes one restic snapshot made by a session.
type SnapshotStats struct {
	// +optional
	Name string `json:"name,omitempty"`
	// +optional
	Path string `json:"path,omitempty"`
	// +optional
	TotalSize string `json:"totalSize,omitempty"`
	// +optional
	Uploaded string `json:"uploaded,omitempty"`
	// +optional
	ProcessingTime string `json:"processingTime,omitempty"`
	// +optional
	FileStats FileStats `json:"fileStats,omitempty"`
}

// FileStats counts files in a snapshot.
type FileStats struct {
	// +optional
	TotalFiles *int64 `json:"totalFiles,omitempty"`
	// +optional
	NewFiles *int64 `json:"newFiles,omitempty"`
	// +optional
	ModifiedFiles *int64 `json:"modifiedFiles,omitempty"`
	// +optional
	UnmodifiedFiles *int64 `json:"unmodifiedFiles,omitempty"`
}
