package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of this package.
var GroupVersion = schema.GroupVersion{Group: "stash.appscode.com", Version: "v1alpha1"}

// Resource and kind names as served by the API server.
const (
	ResourceRepositories = "repositories"
	KindRepository       = "Repository"
)

// AddToScheme registers this package's kinds with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &Repository{}, &RepositoryList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
