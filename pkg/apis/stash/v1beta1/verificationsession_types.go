package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VerificationSession proves that one snapshot of a BackupConfiguration
// restores into a database whose data equals what was backed up: the agent
// of the config's database restores it into a scratch server, dumps that
// again, and compares table by table with the manifest the backup stored.
// Not a Stash kind; kubectl stash adds it beside them.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=verificationsessions,singular=verificationsession,shortName=vs,categories={stash,appscode,all}
// +kubebuilder:printcolumn:name="Invoker",type="string",JSONPath=".spec.invoker.name"
// +kubebuilder:printcolumn:name="Snapshot",type="string",JSONPath=".status.snapshot"
// +kubebuilder:printcolumn:name="Phase",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Tables",type="integer",JSONPath=".status.tablesChecked"
// +kubebuilder:printcolumn:name="Mismatches",type="integer",JSONPath=".status.mismatchCount"
// +kubebuilder:printcolumn:name="RTO",type="string",JSONPath=".status.restoreDuration"
// +kubebuilder:printcolumn:name="Duration",type="string",JSONPath=".status.sessionDuration"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type VerificationSession struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   VerificationSessionSpec   `json:"spec,omitempty"`
	Status VerificationSessionStatus `json:"status,omitempty"`
}

// VerificationSessionList is a list of VerificationSessions.
//
// +kubebuilder:object:root=true
type VerificationSessionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VerificationSession `json:"items"`
}

// VerificationSessionSpec says which snapshot to verify, and where.
type VerificationSessionSpec struct {
	// Invoker is the BackupConfiguration whose snapshot is verified; its
	// database's agent runs the verification.
	// +kubebuilder:validation:Required
	Invoker BackupInvokerRef `json:"invoker"`
	// Snapshot is a snapshot ID of the config's Repository, or "latest"
	// (the newest backup of the config's database).
	// +kubebuilder:default=latest
	// +optional
	Snapshot string `json:"snapshot,omitempty"`
	// Target names an AppBinding to restore into instead of a scratch
	// server started inside the agent's pod; that AppBinding's agent runs
	// the verification, with read access to the config's Repository. It
	// drops every database of the target but the server's own first, and
	// the target keeps its accounts (the snapshot's account tables are
	// neither loaded nor compared). It must never be a production
	// database: the config's own database, or any database a
	// BackupConfiguration backs up, is refused.
	// +optional
	Target *TargetRef `json:"target,omitempty"`
	// TimeOut bounds the verification (a Go duration).
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	TimeOut string `json:"timeOut,omitempty"`
}

// VerificationPhase is a VerificationSession's phase.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Invalid
type VerificationPhase string

const (
	VerificationPending   VerificationPhase = "Pending"
	VerificationRunning   VerificationPhase = "Running"
	VerificationSucceeded VerificationPhase = "Succeeded"
	VerificationFailed    VerificationPhase = "Failed"
	VerificationInvalid   VerificationPhase = "Invalid"
)

// VerificationSessionStatus is written by the agent that claimed it.
type VerificationSessionStatus struct {
	// +optional
	Phase VerificationPhase `json:"phase,omitempty"`
	// +optional
	ClaimedBy string `json:"claimedBy,omitempty"`
	// +optional
	HeartbeatTime *metav1.Time `json:"heartbeatTime,omitempty"`
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// +optional
	SessionDuration string `json:"sessionDuration,omitempty"`
	// Snapshot is the snapshot verified.
	// +optional
	Snapshot string `json:"snapshot,omitempty"`
	// SnapshotTime is when it was taken.
	// +optional
	SnapshotTime *metav1.Time `json:"snapshotTime,omitempty"`
	// TablesChecked is how many tables were compared with the manifest.
	// +optional
	TablesChecked int `json:"tablesChecked,omitempty"`
	// MismatchCount is how many differences were found.
	// +optional
	MismatchCount int `json:"mismatchCount,omitempty"`
	// Mismatches name the differences (at most 50).
	// +optional
	Mismatches []string `json:"mismatches,omitempty"`
	// RestoreDuration is how long the restore into the scratch server
	// took: a measured recovery time (RTO) for this snapshot.
	// +optional
	RestoreDuration string `json:"restoreDuration,omitempty"`
	// PointInTime is the binlog replay to a random second of the window,
	// when the config archives its binlog.
	// +optional
	PointInTime *PITRRestoreStatus `json:"pointInTime,omitempty"`
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Message summarises the outcome.
	// +optional
	Message string `json:"message,omitempty"`
}

// VerificationStatus is a BackupConfiguration's last verification.
type VerificationStatus struct {
	// LastSession names the newest finished VerificationSession.
	// +optional
	LastSession string `json:"lastSession,omitempty"`
	// LastPhase is its phase.
	// +optional
	LastPhase VerificationPhase `json:"lastPhase,omitempty"`
	// LastVerifiedSnapshot is the newest snapshot that verified.
	// +optional
	LastVerifiedSnapshot string `json:"lastVerifiedSnapshot,omitempty"`
	// LastVerifiedSnapshotTime is when that snapshot was taken.
	// +optional
	LastVerifiedSnapshotTime *metav1.Time `json:"lastVerifiedSnapshotTime,omitempty"`
	// LastVerifiedTime is when that verification ended.
	// +optional
	LastVerifiedTime *metav1.Time `json:"lastVerifiedTime,omitempty"`
	// LastRestoreDuration is that verification's restore time (RTO).
	// +optional
	LastRestoreDuration string `json:"lastRestoreDuration,omitempty"`
	// BackupsSinceVerification counts successful backups since the last
	// verification was started, for stash.appscode.com/verify-every.
	// +optional
	BackupsSinceVerification int `json:"backupsSinceVerification,omitempty"`
}
