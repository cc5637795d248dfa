package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// maxReason bounds a reason shown in status (PodSecurity lists every field).
const maxReason = 400

// AgentNoPodReason says why an agent Deployment has no available pod, from
// what the controllers left: a pod that exists but does not run (waiting
// on its image, unschedulable), else the Deployment's ReplicaFailure
// condition, else the newest Warning Event of its ReplicaSets (FailedCreate
// with "violates PodSecurity" when the namespace refuses the pod). "" when
// nothing says, or the caller may not read it.
func AgentNoPodReason(ctx context.Context, kube kubernetes.Interface, d *appsv1.Deployment) string {
	if r := podReason(ctx, kube, d); r != "" {
		return clip(r)
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			return clip(c.Reason + ": " + c.Message)
		}
	}
	for _, rs := range ownedReplicaSets(ctx, kube, d) {
		for _, c := range rs.Status.Conditions {
			if c.Type == appsv1.ReplicaSetReplicaFailure && c.Status == corev1.ConditionTrue {
				return clip(fmt.Sprintf("%s: %s (ReplicaSet %s)", c.Reason, c.Message, rs.Name))
			}
		}
		if e := newestWarning(ctx, kube, rs); e != nil {
			return clip(fmt.Sprintf("%s: %s (ReplicaSet %s)", e.Reason, e.Message, rs.Name))
		}
	}
	return ""
}

// ownedReplicaSets are the Deployment's ReplicaSets, newest first.
func ownedReplicaSets(ctx context.Context, kube kubernetes.Interface, d *appsv1.Deployment) []appsv1.ReplicaSet {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil
	}
	list, err := kube.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil
	}
	var out []appsv1.ReplicaSet
	for _, rs := range list.Items {
		if ref := metav1.GetControllerOf(&rs); ref != nil && ref.UID == d.UID {
			out = append(out, rs)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[j].CreationTimestamp.Before(&out[i].CreationTimestamp) })
	return out
}

// newestWarning is the newest Warning Event about a ReplicaSet, nil if none.
func newestWarning(ctx context.Context, kube kubernetes.Interface, rs appsv1.ReplicaSet) *corev1.Event {
	fs := fields.Set{"involvedObject.kind": "ReplicaSet", "involvedObject.name": rs.Name}.AsSelector().String()
	list, err := kube.CoreV1().Events(rs.Namespace).List(ctx, metav1.ListOptions{FieldSelector: fs})
	if err != nil {
		return nil
	}
	var newest *corev1.Event
	for i := range list.Items {
		e := &list.Items[i]
		// The field selector is the server's; check again for other clients.
		if e.Type != corev1.EventTypeWarning || e.InvolvedObject.Kind != "ReplicaSet" || e.InvolvedObject.Name != rs.Name {
			continue
		}
		if e.InvolvedObject.UID != "" && rs.UID != "" && e.InvolvedObject.UID != rs.UID {
			continue
		}
		if newest == nil || eventTime(newest).Before(eventTime(e)) {
			newest = e
		}
	}
	return newest
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// podReason says why an existing agent pod does not run: a container
// waiting (ImagePullBackOff, CrashLoopBackOff) or an unscheduled pod.
func podReason(ctx context.Context, kube kubernetes.Interface, d *appsv1.Deployment) string {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return ""
	}
	pods, err := kube.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return ""
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" {
				return fmt.Sprintf("pod %s: %s: %s", p.Name, w.Reason, w.Message)
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				return fmt.Sprintf("pod %s: %s: %s", p.Name, c.Reason, c.Message)
			}
		}
	}
	return ""
}

// clip keeps a reason to one bounded line.
func clip(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxReason {
		s = strings.ToValidUTF8(s[:maxReason], "") + "…"
	}
	return strings.TrimSuffix(s, ": ")
}
