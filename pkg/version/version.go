// Package version holds the build's version, stamped by the Makefile's ldflags.
package version

// Set with -ldflags "-X github.com/kubectl-stash/kubectl-stash/pkg/version.Version=...".
var (
	Version = "v0.0.0-dev"
	Commit  = "unknown"
)

// DefaultAgentImageRepo is the agent image; the tag is the plugin's version.
const DefaultAgentImageRepo = "ghcr.io/kubectl-stash/stash-agent"

// AgentImage is the image the plugin renders unless --image overrides it.
func AgentImage() string { return DefaultAgentImageRepo + ":" + Version }
