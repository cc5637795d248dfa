package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RestoreSession restores a snapshot into a target database.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=restoresessions,singular=restoresession,categories={stash,appscode,all}
// +kubebuilder:printcolumn:name="Repository",type="string",JSONPath=".spec.repository.name"
// +kubebuilder:printcolumn:name="Phase",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Duration",type="string",JSONPath=".status.sessionDuration"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type RestoreSession struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RestoreSessionSpec   `json:"spec,omitempty"`
	Status RestoreSessionStatus `json:"status,omitempty"`
}

// RestoreSessionList is a list of RestoreSessions.
//
// +kubebuilder:object:root=true
type RestoreSessionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RestoreSession `json:"items"`
}

// RestoreSessionSpec says what to restore and where.
type RestoreSessionSpec struct {
	// +kubebuilder:default=Restic
	// +optional
	Driver Driver `json:"driver,omitempty"`
	// +kubebuilder:validation:Required
	Repository RepositoryRef `json:"repository"`
	// +optional
	Task TaskRef `json:"task,omitempty"`
	// +kubebuilder:validation:Required
	Target *RestoreTarget `json:"target"`
	// Rules is deprecated in Stash; use target.rules.
	// +optional
	Rules []Rule `json:"rules,omitempty"`
	// +optional
	RuntimeSettings RuntimeSettings `json:"runtimeSettings,omitempty"`
	// +optional
	TempDir EmptyDirSettings `json:"tempDir,omitempty"`
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	TimeOut string `json:"timeOut,omitempty"`
	// +optional
	Hooks *RestoreHooks `json:"hooks,omitempty"`
}

// RestoreTarget is the object restored into.
type RestoreTarget struct {
	// +optional
	Alias string `json:"alias,omitempty"`
	// +kubebuilder:validation:Required
	Ref TargetRef `json:"ref"`
	// +optional
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// +optional
	Args []string `json:"args,omitempty"`
	// +optional
	Rules []Rule `json:"rules,omitempty"`
}

// Rule picks the snapshots to restore.
type Rule struct {
	// +optional
	TargetHosts []string `json:"targetHosts,omitempty"`
	// SourceHost is the host the snapshots were taken from.
	// +optional
	SourceHost string `json:"sourceHost,omitempty"`
	// Snapshots are snapshot IDs, or "latest".
	// +optional
	Snapshots []string `json:"snapshots,omitempty"`
	// +optional
	Paths []string `json:"paths,omitempty"`
	// +optional
	Include []string `json:"include,omitempty"`
	// +optional
	Exclude []string `json:"exclude,omitempty"`
}

// RestoreHooks run around a restore.
type RestoreHooks struct {
	// +optional
	PreRestore *Handler `json:"preRestore,omitempty"`
	// +optional
	PostRestore *PostHook `json:"postRestore,omitempty"`
}

// RestorePhase is a RestoreSession's phase.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Unknown;Invalid
type RestorePhase string

const (
	RestorePending   RestorePhase = "Pending"
	RestoreRunning   RestorePhase = "Running"
	RestoreSucceeded RestorePhase = "Succeeded"
	RestoreFailed    RestorePhase = "Failed"
	RestoreUnknown   RestorePhase = "Unknown"
	RestoreInvalid   RestorePhase = "Invalid"
)

// RestoreSessionStatus is written by the agent that claimed the session.
type RestoreSessionStatus struct {
	// +optional
	Phase RestorePhase `json:"phase,omitempty"`
	// +optional
	TotalHosts *int32 `json:"totalHosts,omitempty"`
	// +optional
	SessionDuration string `json:"sessionDuration,omitempty"`
	// +optional
	SessionDeadline *metav1.Time `json:"sessionDeadline,omitempty"`
	// +optional
	Stats []HostRestoreStats `json:"stats,omitempty"`
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ClaimedBy is the agent instance running the restore.
	// +optional
	ClaimedBy string `json:"claimedBy,omitempty"`
	// HeartbeatTime is when the agent running the restore last showed it
	// is alive. A new leader settles a Running restore of another agent,
	// as Failed, once this has not changed for a lease duration.
	// +optional
	HeartbeatTime *metav1.Time `json:"heartbeatTime,omitempty"`
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// +optional
	Progress *Progress `json:"progress,omitempty"`
	// Snapshot is the snapshot being restored.
	// +optional
	Snapshot string `json:"snapshot,omitempty"`
	// PointInTime is what a restore to a point in time replayed from the
	// binlog archive on top of Snapshot.
	// +optional
	PointInTime *PITRRestoreStatus `json:"pointInTime,omitempty"`
	// Restored says what of the snapshot was restored: all of it, or what
	// the rule's include and exclude selected.
	// +optional
	Restored *RestoredContents `json:"restored,omitempty"`
	// Message summarises the outcome and, on failure, the database's state.
	// +optional
	Message string `json:"message,omitempty"`
}

// RestoredContents is what a restore applied.
type RestoredContents struct {
	// Selection is the include, exclude and rename choices, as flags;
	// empty for the whole snapshot.
	// +optional
	Selection string `json:"selection,omitempty"`
	// Databases restored, under the names they were restored as.
	// +optional
	Databases []string `json:"databases,omitempty"`
	// Objects is how many tables, views and sequences were restored, of
	// Available in the snapshot.
	Objects   int `json:"objects"`
	Available int `json:"available"`
	// Accounts: the snapshot's accounts and grants (the mysql schema's
	// account tables) replaced the target's.
	// +optional
	Accounts bool `json:"accounts,omitempty"`
	// Warnings name what the selection may break, such as a foreign key
	// to a table left out (at most 20).
	// +optional
	Warnings []string `json:"warnings,omitempty"`
}

// PITRRestoreStatus is a binlog replay's account.
type PITRRestoreStatus struct {
	// Target is the time asked for (RFC 3339), or "latest".
	Target string `json:"target"`
	// StartPosition is file:offset of the base snapshot, where replay began.
	// +optional
	StartPosition string `json:"startPosition,omitempty"`
	// Files is how many archived binlog files the replay read, as one stream.
	// +optional
	Files int `json:"files,omitempty"`
	// Transactions replayed.
	Transactions int `json:"transactions"`
	// +optional
	FirstEventTime *metav1.Time `json:"firstEventTime,omitempty"`
	// +optional
	LastEventTime *metav1.Time `json:"lastEventTime,omitempty"`
	// +optional
	FirstGTID string `json:"firstGTID,omitempty"`
	// +optional
	LastGTID string `json:"lastGTID,omitempty"`
	// GapsCrossed are the archive's gaps a replay allowed to cross them
	// (restore-allow-gap) went over: the events in each are missing.
	// +optional
	GapsCrossed []string `json:"gapsCrossed,omitempty"`
}

// HostRestoreStats is one host's restore result.
type HostRestoreStats struct {
	// +optional
	Hostname string `json:"hostname,omitempty"`
	// +optional
	Phase HostPhase `json:"phase,omitempty"`
	// +optional
	Duration string `json:"duration,omitempty"`
	// +optional
	Error string `json:"error,omitempty"`
}
