package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// AppBinding says how to connect to an application and with which credentials.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=appbindings,singular=appbinding,shortName=app,categories={catalog,appscode,all}
// +kubebuilder:printcolumn:name="Type",type="string",JSONPath=".spec.type"
// +kubebuilder:printcolumn:name="Version",type="string",JSONPath=".spec.version"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type AppBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec AppBindingSpec `json:"spec,omitempty"`
}

// AppBindingList is a list of AppBindings.
//
// +kubebuilder:object:root=true
type AppBindingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AppBinding `json:"items"`
}

// AppBindingSpec describes the connection.
type AppBindingSpec struct {
	// Type of the app: mysql, mariadb, kubedb.com/mysql, kubedb.com/mariadb, ...
	// +optional
	Type string `json:"type,omitempty"`
	// +optional
	AppRef *TypedLocalObjectReference `json:"appRef,omitempty"`
	// Version of the app, used to pick the Task when the invoker names none.
	// +optional
	Version string `json:"version,omitempty"`
	// +kubebuilder:validation:Required
	ClientConfig ClientConfig `json:"clientConfig"`
	// Secret holds the keys username and password.
	// +optional
	Secret *corev1.LocalObjectReference `json:"secret,omitempty"`
	// +optional
	SecretTransforms []SecretTransform `json:"secretTransforms,omitempty"`
	// Parameters is free-form; Stash reads stash.addon.backupTask/restoreTask here.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +optional
	Parameters *runtime.RawExtension `json:"parameters,omitempty"`
	// +optional
	TLSSecret *corev1.LocalObjectReference `json:"tlsSecret,omitempty"`
}

// TypedLocalObjectReference names an object in the same namespace.
type TypedLocalObjectReference struct {
	// +optional
	APIGroup string `json:"apiGroup,omitempty"`
	// +optional
	Kind string `json:"kind,omitempty"`
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// ClientConfig is either a URL or a Service, plus TLS settings.
//
// +kubebuilder:validation:XValidation:rule="has(self.url) || has(self.service)",message="one of clientConfig.url or clientConfig.service must be set"
type ClientConfig struct {
	// URL in one of the forms tcp(host:port)/, mysql://host:port or host:port.
	// +optional
	URL *string `json:"url,omitempty"`
	// +optional
	Service *ServiceReference `json:"service,omitempty"`
	// +optional
	InsecureSkipTLSVerify bool `json:"insecureSkipTLSVerify,omitempty"`
	// CABundle is a PEM CA used to verify the server's certificate.
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`
	// +optional
	ServerName string `json:"serverName,omitempty"`
}

// ServiceReference names a Service and port.
type ServiceReference struct {
	// +optional
	Scheme string `json:"scheme,omitempty"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
	// +optional
	Path *string `json:"path,omitempty"`
	// +optional
	Query string `json:"query,omitempty"`
}

// SecretTransform rewrites the Secret's keys before use.
type SecretTransform struct {
	// +optional
	RenameKey *RenameKeyTransform `json:"renameKey,omitempty"`
	// +optional
	AddKey *AddKeyTransform `json:"addKey,omitempty"`
	// +optional
	AddKeysFrom *AddKeysFromTransform `json:"addKeysFrom,omitempty"`
	// +optional
	RemoveKey *RemoveKeyTransform `json:"removeKey,omitempty"`
}

// RenameKeyTransform renames a key.
type RenameKeyTransform struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// AddKeyTransform adds a key with a literal value.
type AddKeyTransform struct {
	Key string `json:"key"`
	// +optional
	Value []byte `json:"value,omitempty"`
	// +optional
	StringValue *string `json:"stringValue,omitempty"`
}

// AddKeysFromTransform copies the keys of another Secret.
type AddKeysFromTransform struct {
	// +optional
	SecretRef *corev1.LocalObjectReference `json:"secretRef,omitempty"`
}

// RemoveKeyTransform removes a key.
type RemoveKeyTransform struct {
	Key string `json:"key"`
}
