package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/kubectl-stash/kubectl-stash/pkg/apply"
)

// Dry-run modes, as in kubectl.
const (
	DryRunNone   = "none"
	DryRunClient = "client"
	DryRunServer = "server"
)

// ApplyFlags are the output and dry-run flags of every command that writes objects.
type ApplyFlags struct {
	Print  *genericclioptions.PrintFlags
	DryRun string
	// Operation is the verb printed without -o, as kubectl does.
	Operation string
}

func newApplyFlags() *ApplyFlags {
	return &ApplyFlags{Print: genericclioptions.NewPrintFlags("serverside-applied").WithTypeSetter(printScheme()), DryRun: DryRunNone, Operation: "serverside-applied"}
}

// AddFlags adds -o and --dry-run.
func (a *ApplyFlags) AddFlags(cmd *cobra.Command) {
	a.Print.AddFlags(cmd)
	cmd.Flags().StringVar(&a.DryRun, "dry-run", DryRunNone, `"none", "client" (print what would be applied) or "server" (validate on the server, persist nothing)`)
	cmd.Flags().Lookup("dry-run").NoOptDefVal = DryRunClient
}

// Validate checks the flag values.
func (a *ApplyFlags) Validate() error {
	switch a.DryRun {
	case DryRunNone, DryRunClient, DryRunServer:
	default:
		return usageErr("--dry-run must be none, client or server, not %q", a.DryRun)
	}
	if f := *a.Print.OutputFormat; f != "" {
		ok := false
		for _, g := range a.Print.AllowedFormats() {
			ok = ok || g == f
		}
		if !ok {
			return usageErr("-o %q is not supported; use one of %v", f, a.Print.AllowedFormats())
		}
	}
	return nil
}

// Emit applies objs (unless client dry-run) and prints them.
func (a *ApplyFlags) Emit(cmd *cobra.Command, out io.Writer, applier func([]runtime.Object) ([]apply.Result, error), objs []runtime.Object) error {
	if a.DryRun == DryRunClient {
		return a.print(out, objs, "(dry run)")
	}
	if _, err := applier(objs); err != nil {
		return err
	}
	suffix := ""
	if a.DryRun == DryRunServer {
		suffix = "(server dry run)"
	}
	return a.print(out, objs, suffix)
}

func (a *ApplyFlags) print(out io.Writer, objs []runtime.Object, suffix string) error {
	if *a.Print.OutputFormat == "" {
		for _, o := range objs {
			m, err := meta.Accessor(o)
			if err != nil {
				return err
			}
			gvk := o.GetObjectKind().GroupVersionKind()
			kind := gvk.Kind
			if gvk.Group != "" {
				kind = fmt.Sprintf("%s.%s", lower(gvk.Kind), gvk.Group)
			}
			fmt.Fprintf(out, "%s/%s %s %s\n", lower(kind), m.GetName(), a.Operation, suffix)
		}
		return nil
	}
	p, err := a.Print.ToPrinter()
	if err != nil {
		return err
	}
	if *a.Print.OutputFormat == "json" && len(objs) > 1 {
		list := &metav1.List{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "List"}}
		for _, o := range objs {
			list.Items = append(list.Items, runtime.RawExtension{Object: o})
		}
		return printers.NewTypeSetter(printScheme()).ToPrinter(&printers.JSONPrinter{}).PrintObj(list, out)
	}
	for _, o := range objs {
		u, err := apply.ToUnstructured(o)
		if err != nil {
			return err
		}
		pruneEmpty(u.Object)
		if err := p.PrintObj(u, out); err != nil {
			return err
		}
	}
	return nil
}

// pruneEmpty drops empty objects (runtimeSettings: {}) from printed output;
// they carry nothing and make GitOps diffs noisy.
func pruneEmpty(m map[string]any) {
	for k, v := range m {
		if child, ok := v.(map[string]any); ok {
			pruneEmpty(child)
			if len(child) == 0 {
				delete(m, k)
			}
		}
	}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}
