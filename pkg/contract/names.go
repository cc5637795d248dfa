// Package contract is what the plugin and the agent must agree on: the
// names of the agent's objects and Leases, labels, annotations, snapshot
// hosts, tags and files, slot naming and schedule parsing, the snapshot
// lookup and the usage-policy check. Both sides import it; neither imports
// the other. It does no I/O.
package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// Labels on every agent object.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelVersion   = "app.kubernetes.io/version"
	AgentAppName   = "stash-agent"
	ManagedBy      = "kubectl-stash"
)

// Annotations the plugin writes and the agent reads, or the agent writes
// for itself across restarts.
const (
	// AnnotationRestoreAt asks for the newest snapshot taken at or before a time (RFC 3339).
	AnnotationRestoreAt = "stash.appscode.com/restore-at"
	// AnnotationNotBefore delays a retry session until a time (RFC 3339).
	AnnotationNotBefore = "stash.appscode.com/not-before"
	// AnnotationRetryOf names the failed session a retry repeats.
	AnnotationRetryOf = "stash.appscode.com/retry-of"
	// AnnotationSlot is the schedule slot (RFC 3339) a session was made for.
	AnnotationSlot = "stash.appscode.com/slot"
	// AnnotationTriggeredBy marks a session made by `kubectl stash trigger`.
	AnnotationTriggeredBy = "stash.appscode.com/triggered-by"
)

// BackupHost is the restic host of database snapshots, as in Stash.
const BackupHost = "host-0"

// AgentSelectorString selects every agent Deployment.
func AgentSelectorString() string {
	return labels.SelectorFromSet(labels.Set{LabelName: AgentAppName, LabelManagedBy: ManagedBy}).String()
}

// AgentName is the name of the agent's objects for an AppBinding, and of
// its leader Lease. Names that would pass 63 characters are shortened with
// a hash, so they stay unique.
func AgentName(appBinding string) string { return ShortName("stash-agent-"+appBinding, 63) }

// RepoLease names the Lease, in a Repository's namespace, that every agent
// using the Repository takes before it initialises it (two restic inits at
// once both write a key and a config, and the repository is left with a
// config that half of its keys cannot open) and before its retention. The
// name keeps "init", its first use: agents' Roles name it.
func RepoLease(repository string) string {
	return ShortName("stash-repo-init-"+repository, 63)
}

// ShortName returns name, or a prefix of it plus a hash when it is longer than max.
func ShortName(name string, max int) string {
	if len(name) <= max {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:])[:10]
	p := name[:max-11]
	for len(p) > 0 && (p[len(p)-1] == '-' || p[len(p)-1] == '.') {
		p = p[:len(p)-1]
	}
	return p + "-" + h
}

// SessionTags mark a session's snapshot. The UID tells this session from
// an earlier one of the same name (recreated after the history trimmed
// it) and from a same-named config's in another namespace.
func SessionTags(appBinding, session, uid string) []string {
	return []string{"appbinding=" + appBinding, "session=" + session, "session-uid=" + uid}
}

// DumpFile is the path of the SQL dump inside an AppBinding's snapshots.
func DumpFile(appBinding string) string {
	return "/" + strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == '\\' {
			return '_'
		}
		return r
	}, filepath.Base(appBinding)) + ".sql"
}

// SessionName is the BackupSession name for a config's slot: the same slot
// gives the same name, so a restart or a second replica gets AlreadyExists
// instead of a second session. A config name too long to fit is cut with a
// hash of the whole (ShortName), so two long names that share a prefix do
// not share their sessions.
func SessionName(config string, slot time.Time) string {
	suffix := "-" + strconv.FormatInt(slot.Unix(), 10)
	return ShortName(config, 63-len(suffix)) + suffix
}
