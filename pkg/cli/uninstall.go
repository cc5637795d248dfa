package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-stash/kubectl-stash/pkg/version"
)

// UninstallOptions removes the catalog and the CRDs.
type UninstallOptions struct {
	factory *Factory
	streams genericiooptions.IOStreams
	Yes     bool

	clients *Clients
}

func newUninstallCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &UninstallOptions{factory: f, streams: streams}
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the Task/Function catalog and the Stash CRDs",
		Long: `Uninstall deletes the catalog and the CRDs. Deleting a CRD deletes every object of its kind,
so uninstall refuses while Repositories, BackupConfigurations, sessions or AppBindings exist,
unless --yes is given. Backup data in the repositories' backends is never touched.`,
		Example: `  kubectl stash uninstall
  kubectl stash uninstall --yes   # also when Stash objects still exist`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	cmd.Flags().BoolVar(&o.Yes, "yes", false, "delete the CRDs even though Stash objects exist (they are deleted with them)")
	return cmd
}

// Complete has nothing to fill in: uninstall takes no arguments.
func (o *UninstallOptions) Complete([]string) error { return nil }

// Validate has nothing to check.
func (o *UninstallOptions) Validate() error { return nil }

// Run deletes.
func (o *UninstallOptions) Run(ctx context.Context) error {
	var err error
	if o.clients, err = o.factory.Clients(); err != nil {
		return err
	}
	crds, cat, err := InstallObjects(version.AgentImage())
	if err != nil {
		return err
	}
	if !o.Yes {
		var inUse []string
		for _, obj := range crds {
			crd := obj.(*apiextensionsv1.CustomResourceDefinition)
			if crd.Spec.Scope != apiextensionsv1.NamespaceScoped {
				continue
			}
			n, err := o.countObjects(ctx, crd)
			if err != nil {
				return err
			}
			if n > 0 {
				inUse = append(inUse, fmt.Sprintf("%d %s", n, crd.Spec.Names.Plural))
			}
		}
		if len(inUse) > 0 {
			return usageErr("refusing to uninstall: %s still exist and would be deleted with their CRDs; delete them first or pass --yes (backend data is kept either way)", strings.Join(inUse, ", "))
		}
	}
	for _, obj := range cat {
		gvk := obj.GetObjectKind().GroupVersionKind()
		m, err := o.clients.Applier.Mapping(gvk)
		if err != nil {
			break // CRDs already gone
		}
		name := objName(obj)
		err = o.clients.Kube.Discovery().RESTClient().Delete().AbsPath("/apis", gvk.Group, gvk.Version, m.Resource.Resource, name).Do(ctx).Error()
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s %s: %w", gvk.Kind, name, err)
		}
		fmt.Fprintf(o.streams.Out, "%s.%s/%s deleted\n", m.Resource.Resource, gvk.Group, name)
	}
	for _, obj := range crds {
		name := objName(obj)
		err := o.clients.APIExt.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete CRD %s: %w", name, err)
		}
		fmt.Fprintf(o.streams.Out, "customresourcedefinition.apiextensions.k8s.io/%s deleted\n", name)
	}
	return nil
}

func (o *UninstallOptions) countObjects(ctx context.Context, crd *apiextensionsv1.CustomResourceDefinition) (int, error) {
	var ver string
	for _, v := range crd.Spec.Versions {
		if v.Storage {
			ver = v.Name
		}
	}
	list := &metav1.PartialObjectMetadataList{}
	err := o.clients.Kube.Discovery().RESTClient().Get().AbsPath("/apis", crd.Spec.Group, ver, crd.Spec.Names.Plural).
		SetHeader("Accept", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1").Do(ctx).Into(list)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", crd.Spec.Names.Plural, err)
	}
	return len(list.Items), nil
}
