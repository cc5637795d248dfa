package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of this package.
var GroupVersion = schema.GroupVersion{Group: "appcatalog.appscode.com", Version: "v1alpha1"}

// KindAppBinding is the kind name.
const KindAppBinding = "AppBinding"

// AddToScheme registers this package's kinds with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &AppBinding{}, &AppBindingList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
