package manifest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/bits"
	"sort"

	"github.com/zeebo/xxh3"
)

// headCap bounds how much of a statement is kept to read its names: they
// come first, and routine bodies need not be held.
const headCap = 16 << 10

// Builder reads a dump stream and builds its Manifest. It is an io.Writer:
// write the dump in chunks of any size, then call Manifest.
//
// Outside INSERT data it lexes SQL a byte at a time (quotes, comments,
// mysqldump's /*!NNNNN ... */ version comments, DELIMITER), which is cheap
// because DDL is small. Inside VALUES it jumps between quotes, backslashes
// and parentheses with bytes.IndexByte and hashes each row where it lies in
// the chunk; only a row split across two writes is hashed incrementally.
type Builder struct {
	// Statement lexer.
	st      lexState
	head    []byte // the statement so far, comments dropped, capped at headCap
	delim   []byte // the statement delimiter, ";" or what DELIMITER set
	dm      int    // bytes of delim matched so far
	word    [10]byte
	wlen    int // length of the word being read (may exceed len(word))
	nwords  int // words finished in this statement
	depth   int // parenthesis depth in the statement
	insert  bool
	delimCm bool // the statement is a DELIMITER command: it ends at a newline
	comment []byte
	db      string

	// INSERT data.
	inData   bool
	ddepth   int  // parenthesis depth; 0 between tuples
	quote    byte // the quote of the string being read, or 0
	esc      bool // a backslash ended the last chunk
	qend     bool // a quote ended the last chunk: it may be doubled
	straddle bool // the current row began in an earlier chunk
	partLen  int64
	h        xxh3.Hasher128 // a row that straddles writes
	cur      *acc

	complete bool
	dbs      map[string]bool
	tables   map[key]*acc
	views    map[key]bool
	routines map[string]bool
	triggers map[string]bool
	events   map[string]bool
	seqs     map[string]bool
}

type key struct{ db, name string }

// acc accumulates one table: the digest is hi:lo, a 128-bit sum.
type acc struct {
	rows, bytes int64
	hi, lo      uint64
}

type lexState uint8

const (
	sNormal      lexState = iota
	sSingle               // in '...'
	sSingleEsc            // after a backslash in '...'
	sSingleEnd            // after the closing ', which may be doubled
	sDouble               // in "..."
	sDoubleEsc            // after a backslash in "..."
	sDoubleEnd            // after the closing ", which may be doubled
	sBack                 // in `...`
	sBackEnd              // after the closing `, which may be doubled
	sDash1                // after -
	sDash2                // after --
	sSlash                // after /
	sCommentOpen          // after /*
	sCommentM             // after /*M
	sVersion              // in the digits of /*!NNNNN
	sStar                 // after * (*/ closes a version comment)
	sLineComment          // in -- or # comment
	sBlock                // in /* comment */
	sBlockStar            // after * in /* comment */
)

// NewBuilder returns a Builder at the start of a dump.
func NewBuilder() *Builder {
	return &Builder{
		delim:    []byte{';'},
		dbs:      map[string]bool{},
		tables:   map[key]*acc{},
		views:    map[key]bool{},
		routines: map[string]bool{},
		triggers: map[string]bool{},
		events:   map[string]bool{},
		seqs:     map[string]bool{},
	}
}

// Write reads the next part of the dump. It never fails: statements it
// does not know are skipped.
func (b *Builder) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if b.inData {
			p = p[b.scanData(p):]
		} else {
			p = p[b.scanStmt(p):]
		}
	}
	return n, nil
}

// Manifest is what the dump written so far holds. A row cut off by the end
// of the stream is not counted.
func (b *Builder) Manifest() *Manifest {
	m := &Manifest{Version: Version, Complete: b.complete, Databases: []string{}, Tables: []Table{}}
	for db := range b.dbs {
		m.Databases = append(m.Databases, db)
	}
	sort.Strings(m.Databases)
	for k, a := range b.tables {
		// A view's stand-in may be a table (older mysqldump) of the
		// same name: the view wins.
		if b.views[k] {
			continue
		}
		var d [16]byte
		binary.BigEndian.PutUint64(d[:8], a.hi)
		binary.BigEndian.PutUint64(d[8:], a.lo)
		m.Tables = append(m.Tables, Table{Database: k.db, Name: k.name, Rows: a.rows, Bytes: a.bytes, Digest: hex.EncodeToString(d[:])})
	}
	sort.Slice(m.Tables, func(i, j int) bool {
		if m.Tables[i].Database != m.Tables[j].Database {
			return m.Tables[i].Database < m.Tables[j].Database
		}
		return m.Tables[i].Name < m.Tables[j].Name
	})
	for k := range b.views {
		m.Views = append(m.Views, qualify(k.db, k.name))
	}
	sort.Strings(m.Views)
	m.Routines = sortedKeys(b.routines)
	m.Triggers = sortedKeys(b.triggers)
	m.Events = sortedKeys(b.events)
	m.Sequences = sortedKeys(b.seqs)
	return m
}

func sortedKeys(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

func (b *Builder) table(db, name string) *acc {
	k := key{db, name}
	a := b.tables[k]
	if a == nil {
		a = &acc{}
		b.tables[k] = a
	}
	return a
}

// nextIdx is the index of the next c in p at or after i, or len(p). A
// cached answer still ahead of i is reused, so each special byte of a
// chunk is searched for once, however the searches interleave.
func nextIdx(p []byte, i, cached int, c byte) int {
	if cached >= i {
		return cached
	}
	j := bytes.IndexByte(p[i:], c)
	if j < 0 {
		return len(p)
	}
	return i + j
}

// scanData reads VALUES tuples from p and returns how much it consumed;
// it leaves data mode at the first byte between tuples that is not a
// comma, space or '(' (the delimiter, ON DUPLICATE KEY ...).
func (b *Builder) scanData(p []byte) int {
	nq, ndq, nbs, nop, ncl := -1, -1, -1, -1, -1
	start := 0 // where the current row begins in p
	i := 0
	for i < len(p) {
		if b.ddepth == 0 {
			switch p[i] {
			case '(':
				b.ddepth = 1
				start = i
				i++
			case ',', ' ', '\n', '\r', '\t':
				i++
			default:
				b.inData = false
				return i
			}
			continue
		}
		if b.quote != 0 {
			if b.esc {
				b.esc = false
				i++
				continue
			}
			if b.qend {
				b.qend = false
				if p[i] == b.quote {
					i++
				} else {
					b.quote = 0
				}
				continue
			}
			var q int
			if b.quote == '\'' {
				nq = nextIdx(p, i, nq, '\'')
				q = nq
			} else {
				ndq = nextIdx(p, i, ndq, '"')
				q = ndq
			}
			nbs = nextIdx(p, i, nbs, '\\')
			if nbs < q {
				i = nbs + 2
				if i > len(p) {
					b.esc = true
					i = len(p)
				}
				continue
			}
			if q == len(p) {
				i = q
				break
			}
			i = q + 1
			if i == len(p) {
				b.qend = true
				break
			}
			if p[i] == b.quote { // doubled: still in the string
				i++
				continue
			}
			b.quote = 0
			continue
		}
		// Between strings the runs are short (numbers, commas): a look
		// at the next bytes finds the next special one sooner than four
		// searches; a long run (a hex BLOB) is left to the searches.
		j, lim := i, min(i+32, len(p))
		for j < lim && !dataSpecial[p[j]] {
			j++
		}
		if j == lim && j < len(p) {
			nq = nextIdx(p, i, nq, '\'')
			ncl = nextIdx(p, i, ncl, ')')
			ndq = nextIdx(p, i, ndq, '"')
			nop = nextIdx(p, i, nop, '(')
			j = min(nq, ncl, ndq, nop)
		}
		if j == len(p) {
			i = j
			break
		}
		i = j + 1
		switch p[j] {
		case '\'', '"':
			b.quote = p[j]
		case '(':
			b.ddepth++
		case ')':
			b.ddepth--
			if b.ddepth == 0 {
				b.row(p, start, i)
			}
		}
	}
	if b.ddepth > 0 {
		b.partial(p[start:])
	}
	return len(p)
}

// partial hashes the part of a row that ends a chunk.
func (b *Builder) partial(r []byte) {
	if !b.straddle {
		b.straddle = true
		b.partLen = 0
		b.h.Reset()
	}
	_, _ = b.h.Write(r)
	b.partLen += int64(len(r))
}

// row adds the row p[start:end] (or, if it began in an earlier chunk, the
// hashed part plus p[:end]) to the current table.
func (b *Builder) row(p []byte, start, end int) {
	var h xxh3.Uint128
	var n int64
	if b.straddle {
		_, _ = b.h.Write(p[:end])
		h = b.h.Sum128()
		n = b.partLen + int64(end)
		b.straddle = false
	} else {
		r := p[start:end]
		h = xxh3.Hash128(r)
		n = int64(len(r))
	}
	a := b.cur
	a.rows++
	a.bytes += n
	var c uint64
	a.lo, c = bits.Add64(a.lo, h.Lo, 0)
	a.hi += h.Hi + c
}

// dataSpecial are the bytes that change the state between a row's values.
var dataSpecial = [256]bool{'\'': true, '"': true, '(': true, ')': true}

var isWord = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
	}
	return
}()

func (b *Builder) put(c byte) {
	if len(b.head) < headCap {
		b.head = append(b.head, c)
	}
}

// scanStmt lexes statement text from p and returns how much it consumed:
// all of p, or up to the first byte of INSERT data.
func (b *Builder) scanStmt(p []byte) int {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if b.delimCm {
			if c == '\n' {
				b.setDelimiter()
				continue
			}
			b.put(c)
			continue
		}
		switch b.st {
		case sNormal:
			if b.dm > 0 && c != b.delim[b.dm] {
				// Not the delimiter after all: what matched is text.
				for _, d := range b.delim[:b.dm] {
					b.put(d)
				}
				b.dm = 0
			}
			if c == b.delim[b.dm] {
				// Checked before words: a delimiter may be $$.
				if b.wlen > 0 && b.endWord() {
					return i
				}
				if b.delimCm {
					i--
					continue
				}
				b.dm++
				if b.dm == len(b.delim) {
					b.endStmt()
				}
				continue
			}
			if isWord[c] {
				if b.wlen < len(b.word) {
					if c >= 'a' && c <= 'z' {
						c -= 'a' - 'A'
					}
					b.word[b.wlen] = c
				}
				b.wlen++
				b.put(p[i])
				continue
			}
			if b.wlen > 0 && b.endWord() {
				return i // c is the first byte of the data
			}
			if b.delimCm {
				// The word just ended was DELIMITER.
				i--
				continue
			}
			switch c {
			case '\'':
				b.st = sSingle
			case '"':
				b.st = sDouble
			case '`':
				b.st = sBack
			case '-':
				b.st = sDash1
				continue
			case '#':
				b.st = sLineComment
				b.comment = b.comment[:0]
				continue
			case '/':
				b.st = sSlash
				continue
			case '*':
				b.st = sStar
				continue
			case '(':
				b.depth++
			case ')':
				b.depth--
			}
			b.put(c)
		case sSingle:
			b.put(c)
			if c == '\\' {
				b.st = sSingleEsc
			} else if c == '\'' {
				b.st = sSingleEnd
			}
		case sDouble:
			b.put(c)
			if c == '\\' {
				b.st = sDoubleEsc
			} else if c == '"' {
				b.st = sDoubleEnd
			}
		case sSingleEsc:
			b.put(c)
			b.st = sSingle
		case sDoubleEsc:
			b.put(c)
			b.st = sDouble
		case sSingleEnd, sDoubleEnd:
			if c == '\'' && b.st == sSingleEnd || c == '"' && b.st == sDoubleEnd {
				b.put(c) // doubled: still in the string
				b.st -= 2
				continue
			}
			b.st = sNormal
			i--
		case sBack:
			b.put(c)
			if c == '`' {
				b.st = sBackEnd
			}
		case sBackEnd:
			if c == '`' {
				b.put(c)
				b.st = sBack
				continue
			}
			b.st = sNormal
			i--
		case sDash1:
			if c == '-' {
				b.st = sDash2
				continue
			}
			b.put('-')
			b.st = sNormal
			i--
		case sDash2:
			if c <= ' ' && c != '\n' {
				b.st = sLineComment
				b.comment = b.comment[:0]
				continue
			}
			if c == '\n' { // an empty comment
				b.put(' ')
				b.st = sNormal
				i--
				continue
			}
			b.put('-')
			b.put('-')
			b.st = sNormal
			i--
		case sLineComment:
			j := bytes.IndexByte(p[i:], '\n')
			end := len(p)
			if j >= 0 {
				end = i + j
			}
			if k := min(end, i+24-len(b.comment)); k > i {
				b.comment = append(b.comment, p[i:k]...)
			}
			if j < 0 {
				return len(p)
			}
			i = end
			// Only between statements: not a comment in a routine body.
			if len(bytes.TrimSpace(b.head)) == 0 && bytes.HasPrefix(bytes.TrimLeft(b.comment, " \t"), []byte("Dump completed")) {
				b.complete = true
			}
			b.put(' ')
			b.st = sNormal
			i-- // the newline is whitespace in the statement
		case sSlash:
			if c == '*' {
				b.st = sCommentOpen
				continue
			}
			b.put('/')
			b.st = sNormal
			i--
		case sCommentOpen:
			switch c {
			case '!':
				b.st = sVersion
			case 'M':
				b.st = sCommentM
			default:
				b.st = sBlock
				i--
			}
		case sCommentM:
			if c == '!' {
				b.st = sVersion
				continue
			}
			b.st = sBlock
			i--
		case sVersion:
			if c >= '0' && c <= '9' {
				continue
			}
			if c == '\\' {
				// /*M!999999\- enable the sandbox mode */ is a
				// client command, not SQL.
				b.st = sBlock
				continue
			}
			b.put(' ')
			b.st = sNormal
			i--
		case sStar:
			if c == '/' { // the end of a /*!NNNNN ... */
				b.put(' ')
				b.st = sNormal
				continue
			}
			b.put('*')
			b.st = sNormal
			i--
		case sBlock:
			j := bytes.IndexByte(p[i:], '*')
			if j < 0 {
				return len(p)
			}
			i += j
			b.st = sBlockStar
		case sBlockStar:
			switch c {
			case '/':
				b.put(' ')
				b.st = sNormal
			case '*':
			default:
				b.st = sBlock
			}
		}
	}
	return len(p)
}

// endWord handles the end of a word of statement text; it reports whether
// INSERT data starts here.
func (b *Builder) endWord() bool {
	w := string(b.word[:min(b.wlen, len(b.word))])
	long := b.wlen > len(b.word)
	b.wlen = 0
	b.nwords++
	if b.nwords == 1 && !long {
		switch w {
		case "INSERT", "REPLACE":
			b.insert = true
		case "DELIMITER":
			b.delimCm = true
		}
		return false
	}
	if b.insert && b.depth == 0 && !long {
		switch w {
		case "VALUES", "VALUE":
			b.startData()
			return true
		case "SELECT", "SET", "ON":
			// INSERT ... SELECT or SET: no tuples; a later
			// VALUES(col) is a function.
			b.insert = false
		}
	}
	return false
}

// startData enters the data of an INSERT whose head has been read.
func (b *Builder) startData() {
	l := lexer{s: b.head}
	l.next() // INSERT or REPLACE
	for {
		t, quoted := l.next()
		if quoted || !(eq(t, "LOW_PRIORITY") || eq(t, "DELAYED") || eq(t, "HIGH_PRIORITY") || eq(t, "IGNORE") || eq(t, "INTO")) {
			l.back(t)
			break
		}
	}
	db, name := l.name(b.db)
	b.cur = b.table(db, name)
	b.inData = true
	b.ddepth = 0
	b.quote = 0
	b.esc, b.qend, b.straddle = false, false, false
	// The rest of the statement (the delimiter, ON DUPLICATE KEY ...) is
	// read as text that names nothing.
	b.head = b.head[:0]
	b.insert = false
	b.nwords = 1
}

func (b *Builder) endStmt() {
	b.classify()
	b.head = b.head[:0]
	b.dm = 0
	b.nwords = 0
	b.depth = 0
	b.insert = false
}

func (b *Builder) setDelimiter() {
	l := lexer{s: b.head}
	l.next() // DELIMITER
	d := bytes.TrimSpace(b.head[l.i:])
	if i := bytes.IndexAny(d, " \t"); i >= 0 {
		d = d[:i]
	}
	if len(d) > 0 {
		b.delim = append(b.delim[:0], d...)
	}
	b.delimCm = false
	b.head = b.head[:0]
	b.dm = 0
	b.nwords = 0
	b.depth = 0
	b.insert = false
}

// classify records what a finished statement creates or selects.
func (b *Builder) classify() {
	l := lexer{s: b.head}
	t, quoted := l.next()
	if quoted {
		return
	}
	switch {
	case eq(t, "USE"):
		if _, name := l.name(""); name != "" {
			b.db = name
			b.dbs[name] = true
		}
	case eq(t, "CREATE"):
		b.create(&l)
	}
}

// create reads CREATE [OR REPLACE] [ALGORITHM=..] [DEFINER=..]
// [SQL SECURITY ..] [AGGREGATE] kind [IF NOT EXISTS] name.
func (b *Builder) create(l *lexer) {
	var kind string
	for kind == "" {
		t, quoted := l.next()
		if quoted || t == "" {
			return
		}
		switch {
		case eq(t, "OR"), eq(t, "REPLACE"), eq(t, "AGGREGATE"):
		case eq(t, "ALGORITHM"):
			l.next() // =
			l.next()
		case eq(t, "DEFINER"):
			l.next() // =
			l.next() // user, CURRENT_USER or CURRENT_ROLE
			if t, _ := l.next(); t == "@" {
				l.next()
			} else if t == "(" {
				l.next() // )
			} else {
				l.back(t)
			}
		case eq(t, "SQL"):
			l.next() // SECURITY
			l.next()
		case eq(t, "DATABASE"), eq(t, "SCHEMA"):
			kind = "DATABASE"
		case eq(t, "TABLE"), eq(t, "VIEW"), eq(t, "PROCEDURE"), eq(t, "FUNCTION"),
			eq(t, "TRIGGER"), eq(t, "EVENT"), eq(t, "SEQUENCE"):
			kind = upper(t)
		case eq(t, "PACKAGE"):
			kind = "PACKAGE"
			if t, q := l.next(); !q && eq(t, "BODY") {
				kind = "PACKAGE BODY"
			} else {
				l.back(t)
			}
		default:
			return // TEMPORARY TABLE, INDEX, USER, ROLE, SERVER, ...
		}
	}
	// IF NOT EXISTS
	if t, q := l.next(); !q && eq(t, "IF") {
		l.next()
		l.next()
	} else {
		l.back(t)
	}
	db, name := l.name(b.db)
	if name == "" {
		return
	}
	switch kind {
	case "DATABASE":
		b.dbs[name] = true
	case "TABLE":
		b.table(db, name)
	case "VIEW":
		b.views[key{db, name}] = true
	case "TRIGGER":
		b.triggers[qualify(db, name)] = true
	case "EVENT":
		b.events[qualify(db, name)] = true
	case "SEQUENCE":
		b.seqs[qualify(db, name)] = true
	default:
		b.routines[qualify(db, kind+" "+name)] = true
	}
}

// lexer splits statement text into words, quoted names and punctuation.
type lexer struct {
	s    []byte
	i    int
	prev int
}

// next returns the next token; quoted reports a `name`, "name" or
// 'string', given unquoted.
func (l *lexer) next() (tok string, quoted bool) {
	s := l.s
	i := l.i
	for i < len(s) && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
		i++
	}
	l.prev = l.i
	if i == len(s) {
		l.i = i
		return "", false
	}
	c := s[i]
	switch {
	case c == '`' || c == '"' || c == '\'':
		var out []byte
		i++
		for i < len(s) {
			if s[i] == c {
				if i+1 < len(s) && s[i+1] == c {
					out = append(out, c)
					i += 2
					continue
				}
				i++
				break
			}
			if s[i] == '\\' && c != '`' && i+1 < len(s) {
				i++
			}
			out = append(out, s[i])
			i++
		}
		l.i = i
		return string(out), true
	case isWord[c]:
		j := i
		for j < len(s) && isWord[s[j]] {
			j++
		}
		l.i = j
		return string(s[i:j]), false
	}
	l.i = i + 1
	return string(c), false
}

// back undoes the last next.
func (l *lexer) back(string) { l.i = l.prev }

// name reads name or db.name; db is the default database.
func (l *lexer) name(db string) (string, string) {
	n, q := l.next()
	if !q && (n == "" || !isWord[n[0]]) {
		return db, ""
	}
	if t, _ := l.next(); t == "." {
		m, _ := l.next()
		return n, m
	}
	return db, n
}

func eq(t, w string) bool {
	if len(t) != len(w) {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}

func upper(t string) string {
	b := []byte(t)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}
