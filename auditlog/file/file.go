package file

import (
	"bufio"
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/go-defender/defender/auditlog"
)

// Defaults for Options.
const (
	// DefaultDedupeWindow is how many recent record IDs a Sink remembers to
	// make replays idempotent.
	DefaultDedupeWindow = 1 << 14
	// TailScanBytes is how much of the end of an existing file Open reads to
	// seed the remembered IDs.
	TailScanBytes = 16 << 20
	// DefaultPerm is the mode of a file the sink creates.
	DefaultPerm fs.FileMode = 0o640
)

// maxReplaced bounds how many times in a row Write reopens a file that was
// replaced under it before giving up with an error (the caller retries).
const maxReplaced = 100

// afterLock, when set (by tests), runs after Write takes its shared lock:
// it stands for a DeleteBefore in another process that replaced the file
// while Write waited for the lock.
var afterLock func(*Sink)

// RotatedSuffix names the file Query also reads: the previous generation
// left by a rotation ("attempts.jsonl.1", as logrotate names it).
const RotatedSuffix = ".1"

func init() { auditlog.Register("file", openURL) }

// Options configures a Sink. The zero value is valid.
type Options struct {
	// Sync fsyncs the file after each Write (URL: sync=true). Without it a
	// written record survives a crash of the process but not of the
	// machine until the kernel writes it back.
	Sync bool
	// DedupeWindow is how many recent IDs are remembered (URL: dedupe=N);
	// 0 means DefaultDedupeWindow.
	DedupeWindow int
	// Perm is the mode of a created file; 0 means DefaultPerm.
	Perm fs.FileMode
}

var _ auditlog.Sink = (*Sink)(nil)

// Sink is a JSON-lines audit sink: one record per line, appended. It is
// safe for concurrent use, and for use by several processes on one file.
type Sink struct {
	path string
	opts Options

	mu     sync.Mutex
	f      *os.File    // nil when the last (re)open failed
	fi     os.FileInfo // of f, to detect rotation
	seen   *idSet
	broken bool // the last write may have left a partial line
	closed bool
}

// openURL opens "file:///abs/path.jsonl" or "file:relative/path.jsonl".
func openURL(_ context.Context, u *url.URL) (auditlog.Sink, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, auditlog.Errorf(u, "host %q not supported (use file:///absolute/path or file:relative/path)", u.Host)
	}
	path := u.Path
	if u.Opaque != "" {
		path = u.Opaque
	}
	if path == "" {
		return nil, auditlog.Errorf(u, "no file path")
	}
	var opts Options
	p := auditlog.NewParams(u)
	if v, ok := p.Get("sync"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, auditlog.Errorf(u, "sync=%q is not a boolean", v)
		}
		opts.Sync = b
	}
	if v, ok := p.Get("dedupe"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, auditlog.Errorf(u, "dedupe=%q is not a positive integer", v)
		}
		opts.DedupeWindow = n
	}
	if err := p.Done(); err != nil {
		return nil, err
	}
	return New(path, opts)
}

// New opens (creating it and its directory if needed) the JSON-lines file
// at path and remembers the IDs found in its last TailScanBytes.
func New(path string, opts Options) (*Sink, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: file sink path is empty", auditlog.ErrInvalidConfig)
	}
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = DefaultDedupeWindow
	}
	if opts.Perm == 0 {
		opts.Perm = DefaultPerm
	}
	s := &Sink{path: path, opts: opts, seen: newIDSet(opts.DedupeWindow)}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("auditlog/file: %w", err)
	}
	if err := s.reopen(); err != nil {
		return nil, err
	}
	if err := s.seedIDs(); err != nil {
		s.f.Close()
		return nil, err
	}
	return s, nil
}

// Path returns the file's path.
func (s *Sink) Path() string { return s.path }

func (s *Sink) reopen() error {
	if s.f != nil {
		s.f.Close()
		s.f, s.fi = nil, nil
	}
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_RDWR|os.O_APPEND, s.opts.Perm)
	if err != nil {
		return fmt.Errorf("%w: auditlog/file: %w", auditlog.ErrUnavailable, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("%w: auditlog/file: %w", auditlog.ErrUnavailable, err)
	}
	s.f, s.fi = f, fi
	// A file that does not end with a newline ends with a line torn by a
	// crash: start the next write on a new line, so that the torn line
	// stays alone (and is skipped by readers) instead of swallowing a
	// record.
	s.broken = false
	if size := fi.Size(); size > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], size-1); err == nil && last[0] != '\n' {
			s.broken = true
		}
	}
	return nil
}

// current reports whether the path still names the open file.
func (s *Sink) current() bool {
	if s.f == nil {
		return false
	}
	fi, err := os.Stat(s.path)
	return err == nil && os.SameFile(fi, s.fi)
}

func (s *Sink) seedIDs() error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("auditlog/file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("auditlog/file: %w", err)
	}
	start := max(0, fi.Size()-TailScanBytes)
	r := bufio.NewReaderSize(io.NewSectionReader(f, start, fi.Size()-start), 64<<10)
	if start > 0 {
		// Skip the partial first line.
		if _, err := r.ReadBytes('\n'); err != nil {
			return nil
		}
	}
	return scanLines(r, func(rec auditlog.Record) { s.seen.add(rec.ID) })
}

// scanLines calls fn for every line of r that decodes as a record with an
// ID, skipping others (a partial line torn by a crash).
func scanLines(r io.Reader, fn func(auditlog.Record)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var rec auditlog.Record
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.ID != "" {
			fn(rec)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("auditlog/file: %w", err)
	}
	return nil
}

// Write appends the records whose IDs this Sink has not seen recently, as
// one write(2) on a file opened with O_APPEND: concurrent writers, in this
// process or others, never interleave inside a batch. Before writing it
// checks that the path still names the open file and reopens it when a
// rotation renamed or removed it. Idempotence: a record is skipped when its
// ID is among the last DedupeWindow IDs this Sink wrote or found at the end
// of the file when it opened.
func (s *Sink) Write(ctx context.Context, records []auditlog.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return auditlog.ErrClosed
	}
	var buf bytes.Buffer
	ids := make([]string, 0, len(records))
	batch := make(map[string]bool, len(records))
	enc := json.NewEncoder(&buf)
	for i := range records {
		id := records[i].ID
		if id == "" {
			return fmt.Errorf("%w: auditlog/file: record without an ID", auditlog.ErrInvalidConfig)
		}
		if s.seen.has(id) || batch[id] {
			continue
		}
		batch[id] = true
		ids = append(ids, id)
		if err := enc.Encode(&records[i]); err != nil {
			return fmt.Errorf("auditlog/file: %w", err)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	for attempt := 0; ; attempt++ {
		if !s.current() {
			if err := s.reopen(); err != nil {
				return err
			}
		}
		if err := flock(s.f, false); err != nil {
			return fmt.Errorf("%w: auditlog/file: %w", auditlog.ErrUnavailable, err)
		}
		if afterLock != nil {
			afterLock(s)
		}
		// DeleteBefore may have replaced the file while we waited: never
		// write to a file that is no longer at the path.
		if s.current() {
			break
		}
		funlock(s.f)
		if attempt >= maxReplaced {
			return fmt.Errorf("%w: auditlog/file: %s was replaced %d times in a row", auditlog.ErrUnavailable, s.path, attempt+1)
		}
	}
	defer funlock(s.f)
	data := buf.Bytes()
	if s.broken {
		data = append([]byte{'\n'}, data...)
	}
	if _, err := s.f.Write(data); err != nil {
		s.broken = true
		return fmt.Errorf("%w: auditlog/file: %w", auditlog.ErrUnavailable, err)
	}
	s.broken = false
	if s.opts.Sync {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("%w: auditlog/file: fsync: %w", auditlog.ErrUnavailable, err)
		}
	}
	for _, id := range ids {
		s.seen.add(id)
	}
	return nil
}

// Query reads the rotated file (path + RotatedSuffix), if any, and the file,
// and returns the matching records newest first, each ID once. Lines that
// do not decode are skipped.
func (s *Sink) Query(ctx context.Context, f auditlog.Filter) ([]auditlog.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, auditlog.ErrClosed
	}
	h := &newestHeap{}
	seen := map[string]bool{}
	for _, p := range []string{s.path + RotatedSuffix, s.path} {
		fh, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: auditlog/file: %w", auditlog.ErrUnavailable, err)
		}
		err = scanLines(fh, func(r auditlog.Record) {
			if !f.Match(r) || seen[r.ID] {
				return
			}
			seen[r.ID] = true
			heap.Push(h, r)
			if f.Limit > 0 && h.Len() > f.Limit {
				heap.Pop(h) // the oldest
			}
		})
		fh.Close()
		if err != nil {
			return nil, err
		}
	}
	out := make([]auditlog.Record, h.Len())
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = heap.Pop(h).(auditlog.Record)
	}
	return out, nil
}

// DeleteBefore rewrites the file (and the rotated one) without the records
// older than t: it copies the kept lines to a temporary file in the same
// directory, fsyncs it and renames it over the original, holding an
// exclusive flock on the original so that writers in other processes wait
// and then reopen the new file. Lines that do not decode are kept.
func (s *Sink) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, auditlog.ErrClosed
	}
	var total int64
	for _, p := range []string{s.path + RotatedSuffix, s.path} {
		n, err := rewrite(p, t)
		total += n
		if err != nil {
			return total, err
		}
	}
	if !s.current() {
		if err := s.reopen(); err != nil {
			return total, err
		}
	}
	return total, nil
}

func rewrite(path string, t time.Time) (int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("auditlog/file: %w", err)
	}
	defer f.Close()
	if err := flock(f, true); err != nil {
		return 0, fmt.Errorf("auditlog/file: %w", err)
	}
	defer funlock(f)
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("auditlog/file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".cleanup-*")
	if err != nil {
		return 0, fmt.Errorf("auditlog/file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	defer tmp.Close()
	w := bufio.NewWriterSize(tmp, 64<<10)
	var n int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var rec auditlog.Record
		if json.Unmarshal(line, &rec) == nil && rec.ID != "" && rec.Time.Before(t) {
			n++
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		w.Write(line)
		w.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("auditlog/file: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	// The copy must be complete, with the original's mode, and on disk
	// before it replaces the original.
	if err := errors.Join(w.Flush(), tmp.Chmod(fi.Mode().Perm()), tmp.Sync()); err != nil {
		return 0, fmt.Errorf("auditlog/file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, fmt.Errorf("auditlog/file: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return n, nil
}

// Close closes the file. Further calls fail with auditlog.ErrClosed.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return auditlog.ErrClosed
	}
	s.closed = true
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

// String describes the sink for logs.
func (s *Sink) String() string { return "file:" + s.path }

// idSet remembers the last n IDs added.
type idSet struct {
	ring []string
	next int
	m    map[string]struct{}
}

func newIDSet(n int) *idSet { return &idSet{ring: make([]string, n), m: make(map[string]struct{}, n)} }

func (s *idSet) has(id string) bool { _, ok := s.m[id]; return ok }

func (s *idSet) add(id string) {
	if s.has(id) {
		return
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.m, old)
	}
	s.ring[s.next] = id
	s.m[id] = struct{}{}
	s.next = (s.next + 1) % len(s.ring)
}

// newestHeap is a min-heap in newest-first order: its root is the oldest
// record, the one to evict when over the limit.
type newestHeap []auditlog.Record

func (h newestHeap) Len() int { return len(h) }
func (h newestHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	return a.ID < b.ID
}
func (h newestHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *newestHeap) Push(x any)   { *h = append(*h, x.(auditlog.Record)) }
func (h *newestHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}
