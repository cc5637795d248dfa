//go:build tools

package tools

import _ "github.com/restic/rest-server/cmd/rest-server"
