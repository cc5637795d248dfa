// Package dumptee runs mysqldump for restic (restic backup
// --stdin-from-command runs it), passing the dump through while it builds
// the dump's manifest in the same pass, and appends the manifest to the
// dump as one SQL comment line. The manifest so travels inside the
// snapshot: it is found from the snapshot alone and forgotten with it.
package dumptee

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/kubectl-stash/kubectl-stash/pkg/manifest"
)

// Marker starts the trailer line; a comment to mysql, so the dump loads
// as before with any client.
const Marker = "-- stash-manifest: "

// Record is what the trailer holds: the manifest and the dump options
// that produced it, so a verification dumps the scratch server the same way.
type Record struct {
	DumpArgs []string           `json:"dumpArgs"`
	Manifest *manifest.Manifest `json:"manifest"`
}

// RecordedArgs keeps the dump options that shape what is dumped. Those
// that choose the server, the account, the TLS files or where the output
// goes belong to the source and are dropped: a password never reaches the
// snapshot, and a verification's dump never reads another server.
func RecordedArgs(argv []string) []string {
	var out []string
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		if strings.HasPrefix(a, "--") {
			name, _, hasValue := strings.Cut(a, "=")
			if sourceOnly(name) {
				if !hasValue && separateValue[name] && i+1 < len(argv) {
					i++
				}
				continue
			}
		} else if len(a) >= 2 && a[0] == '-' {
			switch a[1] {
			case 'h', 'P', 'S', 'u', 'r', 'T':
				if len(a) == 2 && i+1 < len(argv) {
					i++
				}
				continue
			case 'p', 'C':
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// sourceOnly names the long options that belong to the source's
// connection and output, not to the dump's content.
func sourceOnly(name string) bool {
	if separateValue[name] || strings.HasPrefix(name, "--ssl") || strings.HasPrefix(name, "--tls") || strings.HasPrefix(name, "--defaults") {
		return true
	}
	switch name {
	case "--password", "--master-data", "--source-data", "--dump-slave", "--dump-replica", "--apply-slave-statements", "--apply-replica-statements",
		"--include-master-host-port", "--include-source-host-port", "--gtid", "--compress", "--no-defaults", "--print-defaults":
		return true
	}
	return false
}

// separateValue are source-only options whose value may be the next argument.
var separateValue = map[string]bool{
	"--host": true, "--port": true, "--protocol": true, "--socket": true, "--user": true, "--login-path": true,
	"--log-error": true, "--result-file": true, "--tab": true, "--plugin-dir": true, "--default-auth": true,
	"--ssl-ca": true, "--ssl-capath": true, "--ssl-cert": true, "--ssl-cipher": true, "--ssl-key": true, "--ssl-crl": true, "--ssl-crlpath": true,
	"--tls-version": true, "--defaults-file": true, "--defaults-extra-file": true, "--defaults-group-suffix": true,
}

// Run runs argv, copies its stdout to out while building the manifest,
// and, when it exits 0, writes the trailer. It returns the exit code to
// use: the dump's, so a failed dump still fails restic's snapshot.
func Run(argv []string, out io.Writer, errOut io.Writer) int {
	if len(argv) == 0 {
		fmt.Fprintln(errOut, "dump-tee: no command")
		return 2
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = errOut
	cmd.SysProcAttr = childAttr()
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(errOut, "dump-tee: %v\n", err)
		return 2
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(errOut, "dump-tee: start %s: %v\n", argv[0], err)
		return 2
	}
	b := manifest.NewBuilder()
	if f, ok := pipe.(*os.File); ok {
		growPipe(f)
	}
	if f, ok := out.(*os.File); ok {
		growPipe(f)
	}
	copyErr := pipeline(out, pipe, b)
	if copyErr != nil {
		_ = cmd.Process.Kill() // nobody reads its output any more
	}
	waitErr := cmd.Wait()
	if waitErr != nil {
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		fmt.Fprintf(errOut, "dump-tee: %s: %v\n", argv[0], waitErr)
		return 1
	}
	if copyErr != nil {
		fmt.Fprintf(errOut, "dump-tee: %v\n", copyErr)
		return 1
	}
	line, err := Trailer(Record{DumpArgs: RecordedArgs(argv[1:]), Manifest: b.Manifest()})
	if err == nil {
		_, err = out.Write(line)
	}
	if err != nil {
		fmt.Fprintf(errOut, "dump-tee: write the manifest: %v\n", err)
		return 1
	}
	return 0
}

// chunk is how much one read takes; chunks is how many are in flight.
const (
	chunk  = 256 << 10
	chunks = 16
)

// pipeline copies in to out and feeds the same bytes to b, each in its own
// goroutine: the dump never waits for the manifest's hashing, and restic
// never waits for a read, so the stream moves at the pace of the slowest
// of the dump and restic rather than at the sum of all three.
func pipeline(out io.Writer, in io.Reader, b *manifest.Builder) error {
	free := make(chan []byte, chunks)
	for range chunks {
		free <- make([]byte, chunk)
	}
	toOut, toHash := make(chan []byte, chunks), make(chan []byte, chunks)
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for c := range toHash {
			_, _ = b.Write(c)
			free <- c[:cap(c)]
		}
	}()
	var writeErr error
	var failed atomic.Bool
	written := make(chan struct{})
	go func() {
		defer close(written)
		defer close(toHash)
		for c := range toOut {
			if writeErr == nil {
				if _, writeErr = out.Write(c); writeErr != nil {
					failed.Store(true)
				}
			}
			toHash <- c
		}
	}()
	var readErr error
	for !failed.Load() {
		buf := <-free
		n, err := io.ReadAtLeast(in, buf, 1)
		if n > 0 {
			toOut <- buf[:n]
		} else {
			free <- buf
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = err
			}
			break
		}
	}
	close(toOut)
	<-written
	<-hashed
	return errors.Join(readErr, writeErr)
}

// Trailer is the line appended to the dump.
func Trailer(r Record) ([]byte, error) {
	b, err := json.Marshal(r) // one line: JSON escapes newlines
	if err != nil {
		return nil, err
	}
	return append(append([]byte("\n"+Marker), b...), '\n'), nil
}

// Finder passes a dump through and keeps its trailer, when it has one:
// only a line's first bytes are looked at until they differ from the marker.
type Finder struct {
	w     io.Writer
	state int    // deciding, trailer or other, for the current line
	buf   []byte // the current line's start, or the trailer's JSON
	found []byte
}

const (
	deciding = iota
	inTrailer
	otherLine
)

// NewFinder writes through to w.
func NewFinder(w io.Writer) *Finder { return &Finder{w: w} }

func (f *Finder) Write(p []byte) (int, error) {
	if _, err := f.w.Write(p); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		switch f.state {
		case deciding:
			take := min(len(Marker)-len(f.buf), len(seg))
			f.buf = append(f.buf, seg[:take]...)
			switch {
			case !strings.HasPrefix(Marker, string(f.buf)):
				f.state, f.buf = otherLine, f.buf[:0]
			case len(f.buf) == len(Marker):
				f.state, f.buf = inTrailer, append(f.buf[:0], seg[take:]...)
			}
		case inTrailer:
			f.buf = append(f.buf, seg...)
		}
		if i < 0 {
			break
		}
		if f.state == inTrailer {
			f.found = append([]byte(nil), f.buf...)
		}
		f.state, f.buf = deciding, f.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// Record is the trailer found, if any.
func (f *Finder) Record() (*Record, bool, error) {
	if f.found == nil {
		return nil, false, nil
	}
	var raw struct {
		DumpArgs []string        `json:"dumpArgs"`
		Manifest json.RawMessage `json:"manifest"`
	}
	if err := json.Unmarshal(f.found, &raw); err != nil {
		return nil, true, fmt.Errorf("the dump's manifest cannot be read: %w", err)
	}
	if len(raw.Manifest) == 0 || string(raw.Manifest) == "null" {
		return nil, true, errors.New("the dump's manifest is empty")
	}
	m, err := manifest.Parse(raw.Manifest)
	if err != nil {
		return nil, true, fmt.Errorf("the dump's manifest: %w", err)
	}
	return &Record{DumpArgs: raw.DumpArgs, Manifest: m}, true, nil
}

func childAttr() *syscall.SysProcAttr { return childSysProcAttr() }

// TailMarker is what a dump's last bytes hold when it ends with a trailer.
var TailMarker = []byte("\n" + Marker)

// FromTail reads the trailer from a dump's last bytes (see restic's Tail):
// found is false when they hold none.
func FromTail(tail []byte) (rec *Record, found bool, err error) {
	i := bytes.LastIndex(tail, TailMarker)
	if i < 0 {
		return nil, false, nil
	}
	f := NewFinder(io.Discard)
	if _, err := f.Write(tail[i+1:]); err != nil {
		return nil, true, err
	}
	return f.Record()
}
