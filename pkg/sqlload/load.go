package sqlload

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"sync"
	"time"
)

// Options configure a Loader.
type Options struct {
	// Argv runs the mysql client, reading SQL on stdin; it gets
	// --batch --unbuffered (to see results as statements finish) and must
	// stop at the first error (no --force).
	Argv []string
	Env  []string
	// Connections is how many clients load tables at once (at least 1).
	Connections int
	// SpoolDir holds the spool; SpoolLimit bounds the bytes it holds.
	SpoolDir   string
	SpoolLimit int64
	// Loaded is called with the bytes each client has been sent.
	Loaded func(n int)
	// SkipTable, when set, leaves out the table sections (structure, data
	// and triggers) of the tables it names: db is the database of the
	// dump's USE line in force ("" without one).
	SkipTable func(db, table string) bool
	// DeferIndexes creates InnoDB tables without their plain secondary
	// keys and adds them in one ALTER TABLE after the table's data
	// (deferkeys.go).
	DeferIndexes bool
	// SplitTables spreads the INSERTs of a table whose rows may load in any
	// order over the connections, in chunks of about ChunkBytes (8 MiB when
	// 0) (splittable.go). It needs more than one connection.
	SplitTables bool
	ChunkBytes  int64
}

// Error is a failed client: its stderr says why. Section names what it
// was loading: `db`.`table`, or "" for statements between tables; the line
// numbers in Stderr count that client's input, not the dump's.
type Error struct {
	Stderr  string
	Section string
	Err     error
}

func (e *Error) Error() string { return fmt.Sprintf("%v: %s", e.Err, e.Stderr) }
func (e *Error) Unwrap() error { return e.Err }

// Stats describe a finished load.
type Stats struct {
	Sections, TableSections int
	// SpoolPeak is the most the spool held at once.
	SpoolPeak int64
	// SkippedTables is how many table sections SkipTable left out.
	SkippedTables int
	// DeferredTables is how many tables got their keys after their data.
	DeferredTables int
	// SplitTables is how many tables were cut into Chunks; ChainedChunks
	// of them ran one after another on one connection, because other
	// tables were waiting for the others.
	SplitTables, Chunks, ChainedChunks int
}

// Loader is an io.WriteCloser: write the dump to it, then Close, which
// returns once everything is loaded (or the first error).
type Loader struct {
	o       Options
	ctx     context.Context
	cancel  context.CancelCauseFunc
	sp      *spool
	split   *splitter
	clients []*client
	token   []byte
	done    chan struct{}
	stats   Stats
	runErr  error

	// Where the load is, for Position.
	posMu    sync.Mutex
	loading  map[*section]bool
	finished int
}

// Position is how far a load has got, on the database's side: a table
// counts as finished once the server has executed all of it.
type Position struct {
	// Started is set once the first statement was sent.
	Started bool
	// Finished counts the table sections the server has executed.
	Finished int
	// Loading names the tables being loaded now, as `db`.`table`, in dump
	// order; "" stands for statements between tables.
	Loading []string
}

// Position is the load's position now.
func (l *Loader) Position() Position {
	l.posMu.Lock()
	defer l.posMu.Unlock()
	p := Position{Finished: l.finished, Started: l.finished > 0 || len(l.loading) > 0}
	secs := make([]*section, 0, len(l.loading))
	for sec := range l.loading {
		secs = append(secs, sec)
	}
	sort.Slice(secs, func(i, j int) bool { return secs[i].n < secs[j].n })
	named := map[*section]bool{} // a split table's parts name it once
	for _, sec := range secs {
		head := sec
		if sec.head != nil {
			head = sec.head
		}
		if !named[head] {
			named[head] = true
			p.Loading = append(p.Loading, sec.qualified())
		}
	}
	return p
}

func (l *Loader) running(sec *section, done, ok bool) {
	l.posMu.Lock()
	defer l.posMu.Unlock()
	if !done {
		l.loading[sec] = true
		return
	}
	delete(l.loading, sec)
	if !ok {
		return
	}
	close(sec.done)
	// A table counts once, when its last part has run.
	if sec.kind == kindTable && (sec.part == partWhole || sec.part == partTail) {
		l.finished++
	}
}

// Start starts the clients and the loader.
func Start(ctx context.Context, o Options) (*Loader, error) {
	if len(o.Argv) == 0 {
		return nil, errors.New("sqlload: no client")
	}
	o.Connections = max(o.Connections, 1)
	if o.SpoolLimit <= 0 {
		o.SpoolLimit = 64 << 20
	}
	if o.Loaded == nil {
		o.Loaded = func(int) {}
	}
	var tok [12]byte
	_, _ = rand.Read(tok[:])
	ctx, cancel := context.WithCancelCause(ctx)
	l := &Loader{o: o, ctx: ctx, cancel: cancel, sp: newSpool(o.SpoolDir, o.SpoolLimit, o.SkipTable), done: make(chan struct{}), loading: map[*section]bool{},
		token: []byte("stash-sync-" + hex.EncodeToString(tok[:]))}
	l.split = newSplitter(l.sp)
	l.split.deferKeys = o.DeferIndexes
	l.split.splitRows = o.SplitTables && o.Connections > 1
	l.split.chunkBytes = o.ChunkBytes
	if l.split.chunkBytes <= 0 {
		l.split.chunkBytes = defaultChunk
	}
	for i := range o.Connections {
		c, err := l.startClient(i)
		if err != nil {
			l.abort(err)
			_ = l.finishClients(false)
			return nil, err
		}
		l.clients = append(l.clients, c)
	}
	go l.schedule()
	return l, nil
}

// Write feeds the dump; it blocks while the spool is full.
func (l *Loader) Write(p []byte) (int, error) {
	if err := l.sp.failed(); err != nil {
		return 0, err
	}
	return l.split.Write(p)
}

// Close ends the stream and waits for the load to finish.
func (l *Loader) Close() error {
	if err := l.split.flush(); err != nil {
		l.abort(err)
	}
	l.sp.close()
	<-l.done
	return l.runErr
}

// Abort stops the load: the stream failed. It waits for the clients.
func (l *Loader) Abort(cause error) {
	l.abort(cause)
	<-l.done
}

// Stats are valid after Close or Abort.
func (l *Loader) Stats() Stats { return l.stats }

func (l *Loader) abort(err error) {
	l.sp.fail(err)
	l.cancel(err)
}

// schedule hands sections out in stream order: a table section to the next
// free client, anything else to client 0 once every client is free.
func (l *Loader) schedule() {
	defer close(l.done)
	free := make(chan *client, len(l.clients))
	for _, c := range l.clients {
		free <- c
	}
	failed := make(chan error, len(l.clients))
	take := func() (*client, error) {
		select {
		case c := <-free:
			return c, nil
		case err := <-failed:
			return nil, err
		}
	}
	var running sync.WaitGroup
	// run runs parts in order on c: one section, or the rest of a table.
	run := func(c *client, parts []*section) {
		defer running.Done()
		for i, sec := range parts {
			err := error(nil)
			if i > 0 {
				err = l.await(sec.after)
			}
			if err == nil {
				err = c.run(l, sec)
			}
			if err != nil {
				l.abort(err) // at once: the writer may be waiting for room
				failed <- err
				return
			}
		}
		free <- c
	}
	err := func() error {
		for {
			sec, err := l.sp.nextSection()
			if errors.Is(err, errNoMore) {
				return nil
			}
			if err != nil {
				return err
			}
			l.stats.Sections++
			if sec.kind == kindTable && (sec.part == partWhole || sec.part == partHead) {
				l.stats.TableSections++
			}
			if sec.kind == kindTable && len(l.clients) > 1 {
				parts := []*section{sec}
				if sec.part == partChunk {
					// Other tables are waiting: they, not this table's
					// chunks, keep the other connections busy.
					if rest := l.sp.restOf(sec); rest != nil {
						parts = append(parts, rest...)
						l.stats.ChainedChunks += len(rest) // sec and the chunks after it, not the tail
					}
				}
				if err := await(sec.after, failed); err != nil {
					return err
				}
				c, err := take()
				if err != nil {
					return err
				}
				running.Add(1)
				go run(c, parts)
				continue
			}
			// A barrier: everything before this section has finished.
			var held []*client
			for range l.clients {
				c, err := take()
				if err != nil {
					for _, h := range held {
						free <- h
					}
					return err
				}
				held = append(held, c)
			}
			for _, h := range held {
				free <- h
			}
			if err := l.clients[0].run(l, sec); err != nil {
				return err
			}
		}
	}()
	if err == nil {
		// Every client is free once all have been taken back.
		for range l.clients {
			if _, err = take(); err != nil {
				break
			}
		}
	}
	if err != nil {
		l.abort(err)
	}
	running.Wait()
	l.sp.closeAll()
	l.runErr = errors.Join(err, l.finishClients(err == nil))
	l.stats.SpoolPeak = l.sp.peak
	l.stats.SkippedTables = l.sp.skipped
	l.stats.DeferredTables = l.split.deferredTables
	l.stats.SplitTables, l.stats.Chunks = l.split.splitTables, l.split.chunks
	if l.runErr != nil {
		l.cancel(l.runErr)
	}
}

// await waits until the sections in after have run, or the load failed.
func (l *Loader) await(after []*section) error {
	for _, a := range after {
		select {
		case <-a.done:
		case <-l.ctx.Done():
			return context.Cause(l.ctx)
		}
	}
	return nil
}

// await waits until the sections in after have run, or a client failed.
func await(after []*section, failed <-chan error) error {
	for _, a := range after {
		select {
		case <-a.done:
		case err := <-failed:
			return err
		}
	}
	return nil
}

// client is one mysql process with its session.
type client struct {
	i      int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	synced chan struct{} // a token line was read
	exited chan struct{} // stdout reached EOF
	stderr *tail
	buf    []byte
	primed bool

	waitOnce sync.Once
	waitErr  error
}

// wait reaps the process once, after its output has been read.
func (c *client) wait() error {
	c.waitOnce.Do(func() {
		<-c.exited
		c.waitErr = c.cmd.Wait()
	})
	return c.waitErr
}

func (l *Loader) startClient(i int) (*client, error) {
	argv := append(append([]string(nil), l.o.Argv...), "--batch", "--unbuffered", "--skip-column-names")
	cmd := exec.CommandContext(l.ctx, argv[0], argv[1:]...)
	cmd.Env = l.o.Env
	cmd.WaitDelay = 10 * time.Second
	c := &client{i: i, cmd: cmd, synced: make(chan struct{}, 1), exited: make(chan struct{}), stderr: &tail{max: 8 << 10}, buf: make([]byte, 256<<10),
		primed: i == 0}
	cmd.Stderr = c.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	c.stdin = stdin
	go c.watch(stdout, l.token)
	return c, nil
}

// watch reads the client's output for sync tokens; other output (a SELECT
// in the dump) is dropped.
func (c *client) watch(r io.Reader, token []byte) {
	defer close(c.exited)
	br := bufio.NewReaderSize(r, 4096)
	whole := true
	for {
		line, isPrefix, err := br.ReadLine()
		if err != nil {
			return
		}
		if whole && !isPrefix && bytes.Equal(line, token) {
			c.synced <- struct{}{}
		}
		whole = !isPrefix
	}
}

// run sends one section and waits until the server has executed it.
func (c *client) run(l *Loader, sec *section) (err error) {
	l.running(sec, false, false)
	defer func() { l.running(sec, true, err == nil) }()
	var pre bytes.Buffer
	if !c.primed {
		for _, s := range l.split.replay {
			pre.Write(s)
			pre.WriteByte('\n')
		}
		c.primed = true
	}
	if sec.kind == kindTable && sec.use != "" {
		pre.WriteString(sec.use + "\n")
	}
	err = func() error {
		if pre.Len() > 0 {
			if _, err := c.stdin.Write(pre.Bytes()); err != nil {
				return err
			}
		}
		if err := l.sp.copySection(sec, c.stdin, c.buf, l.o.Loaded); err != nil {
			return err
		}
		_, err := fmt.Fprintf(c.stdin, "\nSELECT '%s';\n", l.token)
		return err
	}()
	if err == nil {
		select {
		case <-c.synced:
			return nil
		case <-c.exited:
			err = errors.New("the client exited")
		case <-l.ctx.Done():
			return context.Cause(l.ctx)
		}
	}
	if ferr := l.sp.failed(); ferr != nil {
		return ferr // stopped because something else failed
	}
	// The client failed: its exit status and stderr say why.
	_ = c.stdin.Close()
	werr := c.wait()
	if werr == nil {
		werr = err
	}
	return &Error{Stderr: c.stderr.String(), Section: sec.qualified(), Err: werr}
}

// finishClients ends every session: stdin is closed after a good load, the
// processes are killed after a failed one.
func (l *Loader) finishClients(ok bool) error {
	if !ok {
		l.cancel(errors.New("load failed"))
	}
	var errs []error
	for _, c := range l.clients {
		_ = c.stdin.Close()
		if err := c.wait(); err != nil && ok {
			errs = append(errs, &Error{Stderr: c.stderr.String(), Err: err})
		}
	}
	return errors.Join(errs...)
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}
