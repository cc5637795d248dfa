package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Repository is a restic repository on a storage backend.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=repositories,singular=repository,shortName=repo,categories={stash,appscode,all}
// +kubebuilder:printcolumn:name="Integrity",type="boolean",JSONPath=".status.integrity"
// +kubebuilder:printcolumn:name="Size",type="string",JSONPath=".status.totalSize"
// +kubebuilder:printcolumn:name="Snapshot-Count",type="integer",JSONPath=".status.snapshotCount"
// +kubebuilder:printcolumn:name="Last-Successful-Backup",type="date",format="date-time",JSONPath=".status.lastBackupTime"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type Repository struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RepositorySpec   `json:"spec,omitempty"`
	Status RepositoryStatus `json:"status,omitempty"`
}

// RepositoryList is a list of Repositories.
//
// +kubebuilder:object:root=true
type RepositoryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Repository `json:"items"`
}

// RepositorySpec says where the repository lives and who may use it.
type RepositorySpec struct {
	// Backend is the storage backend and the Secret holding its credentials.
	// +kubebuilder:validation:Required
	Backend Backend `json:"backend"`
	// WipeOut deletes the backend data when the Repository is deleted.
	// +optional
	WipeOut bool `json:"wipeOut,omitempty"`
	// UsagePolicy controls which namespaces may back up to or restore from this repository.
	// +optional
	UsagePolicy *UsagePolicy `json:"usagePolicy,omitempty"`
}

// Backend is one storage backend. Exactly one of local, s3, gcs, azure, swift, b2 or rest is set.
//
// +kubebuilder:validation:XValidation:rule="(has(self.local)?1:0)+(has(self.s3)?1:0)+(has(self.gcs)?1:0)+(has(self.azure)?1:0)+(has(self.swift)?1:0)+(has(self.b2)?1:0)+(has(self.rest)?1:0) == 1",message="exactly one of local, s3, gcs, azure, swift, b2 or rest must be set"
type Backend struct {
	// StorageSecretName names the Secret with RESTIC_PASSWORD and the backend's credentials.
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinLength=1
	StorageSecretName string `json:"storageSecretName"`

	// +optional
	Local *LocalSpec `json:"local,omitempty"`
	// +optional
	S3 *S3Spec `json:"s3,omitempty"`
	// +optional
	GCS *GCSSpec `json:"gcs,omitempty"`
	// +optional
	Azure *AzureSpec `json:"azure,omitempty"`
	// +optional
	Swift *SwiftSpec `json:"swift,omitempty"`
	// +optional
	B2 *B2Spec `json:"b2,omitempty"`
	// +optional
	Rest *RestServerSpec `json:"rest,omitempty"`
}

// LocalSpec is a volume mounted into the agent; the repository lives at mountPath/subPath.
type LocalSpec struct {
	corev1.VolumeSource `json:",inline"`
	// MountPath is where the volume is mounted in the agent.
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:Pattern=`^/`
	MountPath string `json:"mountPath"`
	// SubPath is a directory inside the volume.
	// +optional
	SubPath string `json:"subPath,omitempty"`
}

// S3Spec is an S3-compatible bucket.
type S3Spec struct {
	// Endpoint, with or without a scheme (s3.amazonaws.com, https://minio.example:9000).
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinLength=1
	Endpoint string `json:"endpoint"`
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinLength=3
	Bucket string `json:"bucket"`
	// +optional
	Prefix string `json:"prefix,omitempty"`
	// +optional
	Region string `json:"region,omitempty"`
	// InsecureTLS skips verification of the endpoint's certificate.
	// +optional
	InsecureTLS bool `json:"insecureTLS,omitempty"`
}

// GCSSpec is a Google Cloud Storage bucket.
type GCSSpec struct {
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinLength=1
	Bucket string `json:"bucket"`
	// +optional
	Prefix string `json:"prefix,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxConnections int64 `json:"maxConnections,omitempty"`
}

// AzureSpec is an Azure Blob Storage container.
type AzureSpec struct {
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinLength=1
	Container string `json:"container"`
	// +optional
	Prefix string `json:"prefix,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxConnections int64 `json:"maxConnections,omitempty"`
}

// SwiftSpec is an OpenStack Swift container.
type SwiftSpec struct {
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinLength=1
	Container string `json:"container"`
	// +optional
	Prefix string `json:"prefix,omitempty"`
}

// B2Spec is a Backblaze B2 bucket.
type B2Spec struct {
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinLength=1
	Bucket string `json:"bucket"`
	// +optional
	Prefix string `json:"prefix,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxConnections int64 `json:"maxConnections,omitempty"`
}

// RestServerSpec is a restic REST server.
type RestServerSpec struct {
	// URL of the REST server, for example http://rest-server:8000/repo.
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:Pattern=`^https?://`
	URL string `json:"url"`
}

// FromNamespaces says which namespaces may use a repository.
// +kubebuilder:validation:Enum=Same;All;Selector
type FromNamespaces string

const (
	NamespacesFromSame     FromNamespaces = "Same"
	NamespacesFromAll      FromNamespaces = "All"
	NamespacesFromSelector FromNamespaces = "Selector"
)

// UsagePolicy limits which namespaces may use a repository.
type UsagePolicy struct {
	// +optional
	AllowedNamespaces AllowedNamespaces `json:"allowedNamespaces,omitempty"`
}

// AllowedNamespaces selects namespaces.
type AllowedNamespaces struct {
	// +kubebuilder:default=Same
	// +optional
	From *FromNamespaces `json:"from,omitempty"`
	// Selector picks namespaces by label when from is Selector.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// RepositoryStatus is written by the agent after each backup.
type RepositoryStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	FirstBackupTime *metav1.Time `json:"firstBackupTime,omitempty"`
	// +optional
	LastBackupTime *metav1.Time `json:"lastBackupTime,omitempty"`
	// Integrity is the result of the last repository check.
	// +optional
	Integrity *bool `json:"integrity,omitempty"`
	// TotalSize is the repository's size on the backend, human readable.
	// +optional
	TotalSize string `json:"totalSize,omitempty"`
	// +optional
	SnapshotCount int64 `json:"snapshotCount,omitempty"`
	// +optional
	SnapshotsRemovedOnLastCleanup int64 `json:"snapshotsRemovedOnLastCleanup,omitempty"`
	// References lists the objects that use this repository.
	// +optional
	References []TypedObjectReference `json:"references,omitempty"`
}

// TypedObjectReference names an object of a kind.
type TypedObjectReference struct {
	// +optional
	APIGroup string `json:"apiGroup,omitempty"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// RetentionPolicy says which snapshots restic forget keeps.
type RetentionPolicy struct {
	// Name labels the policy in messages.
	// +optional
	Name string `json:"name,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	KeepLast int64 `json:"keepLast,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	KeepHourly int64 `json:"keepHourly,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	KeepDaily int64 `json:"keepDaily,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	KeepWeekly int64 `json:"keepWeekly,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	KeepMonthly int64 `json:"keepMonthly,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	KeepYearly int64 `json:"keepYearly,omitempty"`
	// +optional
	KeepTags []string `json:"keepTags,omitempty"`
	// Prune removes the data of forgotten snapshots.
	// +optional
	Prune bool `json:"prune,omitempty"`
	// DryRun reports what would be forgotten without removing it.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
}
