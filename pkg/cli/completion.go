package cli

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// listNames lists the names of a kind in the namespace, for completion.
func listNames(f *Factory, resource string) []string {
	c, err := f.Clients()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var names []string
	switch resource {
	case "repositories":
		l, err := c.Stash.Repositories(c.Namespace).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, o := range l.Items {
				names = append(names, o.Name)
			}
		}
	case "backupconfigurations":
		l, err := c.Stash.BackupConfigurations(c.Namespace).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, o := range l.Items {
				names = append(names, o.Name)
			}
		}
	case "appbindings":
		l, err := c.Stash.AppBindings(c.Namespace).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, o := range l.Items {
				names = append(names, o.Name)
			}
		}
	case "secrets":
		l, err := c.Kube.CoreV1().Secrets(c.Namespace).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, o := range l.Items {
				names = append(names, o.Name)
			}
		}
	}
	return names
}

// completeNames completes the first argument with names from the cluster.
func completeNames(f *Factory, resource string) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return filter(listNames(f, resource), toComplete, ""), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeFlag completes a flag's value with names, optionally prefixed (appbinding/).
func completeFlag(cmd *cobra.Command, f *Factory, flag, resource, prefix string) {
	_ = cmd.RegisterFlagCompletionFunc(flag, func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return filter(listNames(f, resource), toComplete, prefix), cobra.ShellCompDirectiveNoFileComp
	})
}

func filter(names []string, prefix, add string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(add+n, prefix) {
			out = append(out, add+n)
		}
	}
	return out
}
