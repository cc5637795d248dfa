package catalog

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownParam is returned for a ${VAR} with no value and no default.
var ErrUnknownParam = errors.New("no value for parameter")

// Expand substitutes ${NAME} and ${NAME:=default} from params. Values are
// inserted literally: nothing is ever interpreted by a shell.
func Expand(s string, params map[string]string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		rest := s[i+2:]
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			return "", fmt.Errorf("unterminated ${ in %q", s)
		}
		expr := rest[:j]
		name, def, hasDef := strings.Cut(expr, ":=")
		if name == "" {
			return "", fmt.Errorf("empty parameter name in %q", s)
		}
		if v, ok := params[name]; ok {
			b.WriteString(v)
		} else if hasDef {
			b.WriteString(def)
		} else {
			return "", fmt.Errorf("%w %q", ErrUnknownParam, name)
		}
		s = rest[j+1:]
	}
}
