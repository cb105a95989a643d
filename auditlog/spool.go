package auditlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// The spool is a directory of append-only segment files, NNNN.seg (a
// sequence number of 20 digits), each holding one JSON record per line, in
// the order the records were spooled. A segment NNNN.pos beside a segment
// holds how many of its bytes were already delivered. A process only ever
// appends to segments it created itself (a torn last line left by a crash is
// never continued), and deletes a segment once it is fully delivered. The
// file "lock" is held with flock(2) while a Writer uses the directory.
type spool struct {
	dir      string
	maxBytes int64
	segMax   int64
	lock     *os.File

	mu         sync.Mutex
	active     *os.File // appended to; nil until the next append
	activeSeq  uint64
	activeSize int64
	sealed     []segment // oldest first; never written again
	nextSeq    uint64
	total      atomic.Int64 // bytes of every segment file
	pending    atomic.Int64 // records not yet delivered
	closed     bool

	// Reader state, used by the flusher goroutine only.
	cur      *segReader
	inflight []Record
	infEnd   int64
	corrupt  atomic.Uint64
}

type segment struct {
	seq  uint64
	size int64
}

type segReader struct {
	seg segment
	f   *os.File
	r   *bufio.Reader
	off int64
}

func segName(seq uint64) string { return fmt.Sprintf("%020d.seg", seq) }
func posName(seq uint64) string { return fmt.Sprintf("%020d.pos", seq) }

// openSpool opens (creating) dir, locks it and accounts for the segments a
// previous process left behind.
func openSpool(dir string, maxBytes, segMax int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auditlog: spool directory (WriterOptions.SpoolDir): %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("auditlog: spool directory (WriterOptions.SpoolDir): %w", err)
	}
	if err := lockFile(lf); err != nil {
		lf.Close()
		return nil, fmt.Errorf("auditlog: spool directory %s: %w", dir, err)
	}
	s := &spool{dir: dir, maxBytes: maxBytes, segMax: segMax, lock: lf, nextSeq: 1}
	ents, err := os.ReadDir(dir)
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("auditlog: spool directory %s: %w", dir, err)
	}
	have := map[uint64]bool{}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			lf.Close()
			return nil, fmt.Errorf("auditlog: spool %s: %w", name, err)
		}
		have[seq] = true
		s.sealed = append(s.sealed, segment{seq: seq, size: info.Size()})
		s.total.Add(info.Size())
		if seq >= s.nextSeq {
			s.nextSeq = seq + 1
		}
	}
	// Stray position and temporary files of deleted segments.
	for _, e := range ents {
		name := e.Name()
		if seqStr, ok := strings.CutSuffix(strings.TrimSuffix(name, ".tmp"), ".pos"); ok {
			if seq, err := strconv.ParseUint(seqStr, 10, 64); err != nil || !have[seq] || strings.HasSuffix(name, ".tmp") {
				os.Remove(filepath.Join(dir, name))
			}
		}
	}
	sort.Slice(s.sealed, func(i, j int) bool { return s.sealed[i].seq < s.sealed[j].seq })
	for _, seg := range s.sealed {
		n, err := s.countPending(seg)
		if err != nil {
			lf.Close()
			return nil, err
		}
		s.pending.Add(n)
	}
	return s, nil
}

// readPos returns the delivered offset of seg (0 when unknown or invalid).
func (s *spool) readPos(seg segment) int64 {
	b, err := os.ReadFile(filepath.Join(s.dir, posName(seg.seq)))
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n < 0 || n > seg.size {
		return 0
	}
	return n
}

func (s *spool) countPending(seg segment) (int64, error) {
	f, err := os.Open(filepath.Join(s.dir, segName(seg.seq)))
	if err != nil {
		return 0, fmt.Errorf("auditlog: spool: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(s.readPos(seg), io.SeekStart); err != nil {
		return 0, fmt.Errorf("auditlog: spool: %w", err)
	}
	var n int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			n++
		}
	}
	return n, sc.Err()
}

// append writes records at the end of the active segment, in one write
// call, and fsyncs it when sync is set. It refuses the whole batch with
// ErrSpoolFull when that would take the spool over its bound. Any goroutine
// may call it.
func (s *spool) append(records []Record, sync bool) error {
	if len(records) == 0 {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for i := range records {
		if err := enc.Encode(&records[i]); err != nil {
			return fmt.Errorf("auditlog: spool: %w", err)
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.total.Load()+int64(buf.Len()) > s.maxBytes {
		s.mu.Unlock()
		return fmt.Errorf("%w: %d bytes used of %d (WriterOptions.SpoolMaxBytes)", ErrSpoolFull, s.total.Load(), s.maxBytes)
	}
	if s.active == nil {
		seq := s.nextSeq
		f, err := os.OpenFile(filepath.Join(s.dir, segName(seq)), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("auditlog: spool: %w", err)
		}
		s.nextSeq++
		s.active, s.activeSeq, s.activeSize = f, seq, 0
	}
	f := s.active
	n, err := f.Write(buf.Bytes())
	s.activeSize += int64(n)
	s.total.Add(int64(n))
	if err != nil {
		// A partial line is skipped as corrupt when read; start the next
		// append on a fresh segment so it cannot continue that line.
		lines := bytes.Count(buf.Bytes()[:n], []byte{'\n'})
		if n > 0 && buf.Bytes()[n-1] != '\n' {
			lines++
		}
		s.pending.Add(int64(lines))
		sealed := s.sealActiveLocked()
		s.mu.Unlock()
		syncClose(sealed)
		return fmt.Errorf("auditlog: spool: %w", err)
	}
	s.pending.Add(int64(len(records)))
	var sealed *os.File
	if s.activeSize >= s.segMax {
		sealed = s.sealActiveLocked()
	}
	s.mu.Unlock()
	if sealed != nil {
		syncClose(sealed)
		return nil
	}
	if sync {
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			// ErrClosed: a concurrent append sealed (and synced) it.
			return fmt.Errorf("auditlog: spool: fsync: %w", err)
		}
	}
	return nil
}

// sealActiveLocked ends the active segment so that it can be read. It
// returns the file, for the caller to sync and close after unlocking (so
// that Record's overflow path never waits for an fsync), or nil.
func (s *spool) sealActiveLocked() *os.File {
	f := s.active
	if f == nil {
		return nil
	}
	s.sealed = append(s.sealed, segment{seq: s.activeSeq, size: s.activeSize})
	s.active = nil
	return f
}

// syncClose syncs and closes a sealed segment's file, if any.
func syncClose(f *os.File) {
	if f != nil {
		_ = f.Sync()
		_ = f.Close()
	}
}

// next returns up to max records to deliver, oldest first: the same ones
// again until ack is called. It returns nil when the spool is empty.
// Flusher goroutine only.
func (s *spool) next(max int) ([]Record, error) {
	if s.inflight != nil {
		return s.inflight, nil
	}
	for {
		if s.cur == nil {
			s.mu.Lock()
			var sealed *os.File
			if len(s.sealed) == 0 {
				sealed = s.sealActiveLocked()
			}
			if len(s.sealed) == 0 {
				// Nothing on disk: whatever the counter says (lines
				// counted at startup that proved undecodable), nothing
				// is pending.
				s.pending.Store(0)
				s.mu.Unlock()
				return nil, nil
			}
			seg := s.sealed[0]
			s.mu.Unlock()
			syncClose(sealed)
			f, err := os.Open(filepath.Join(s.dir, segName(seg.seq)))
			if errors.Is(err, fs.ErrNotExist) {
				// Deleted behind our back: its records are gone. Count
				// it, forget it, and go on with the next segment rather
				// than wedge the spool.
				s.corrupt.Add(1)
				s.forget(seg)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("auditlog: spool: %w", err)
			}
			pos := s.readPos(seg)
			if _, err := f.Seek(pos, io.SeekStart); err != nil {
				f.Close()
				return nil, fmt.Errorf("auditlog: spool: %w", err)
			}
			s.cur = &segReader{seg: seg, f: f, r: bufio.NewReaderSize(f, 64<<10), off: pos}
		}
		var recs []Record
		end := s.cur.off
		for len(recs) < max {
			line, err := s.cur.r.ReadBytes('\n')
			end += int64(len(line))
			if t := bytes.TrimSpace(line); len(t) > 0 {
				var r Record
				if jerr := json.Unmarshal(t, &r); jerr != nil || r.ID == "" {
					// A torn line (the process died mid-write): it was
					// never acknowledged to anyone; skip it, visibly.
					s.corrupt.Add(1)
					s.pending.Add(-1)
				} else {
					recs = append(recs, r)
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				// Reopen at the delivered position next time.
				s.cur.f.Close()
				s.cur = nil
				return nil, fmt.Errorf("auditlog: spool: %w", err)
			}
		}
		s.inflight, s.infEnd = recs, end
		if len(recs) > 0 {
			return recs, nil
		}
		// Nothing left in this segment.
		if err := s.ack(); err != nil {
			return nil, err
		}
	}
}

// ack marks the records last returned by next as delivered. Flusher
// goroutine only.
func (s *spool) ack() error {
	c := s.cur
	if c == nil {
		return nil
	}
	s.pending.Add(-int64(len(s.inflight)))
	s.inflight = nil
	c.off = s.infEnd
	if c.off < c.seg.size {
		tmp := filepath.Join(s.dir, posName(c.seg.seq)+".tmp")
		if err := os.WriteFile(tmp, []byte(strconv.FormatInt(c.off, 10)), 0o600); err != nil {
			return fmt.Errorf("auditlog: spool: %w", err)
		}
		if err := os.Rename(tmp, filepath.Join(s.dir, posName(c.seg.seq))); err != nil {
			return fmt.Errorf("auditlog: spool: %w", err)
		}
		return nil
	}
	// Segment fully delivered.
	c.f.Close()
	s.cur = nil
	err := os.Remove(filepath.Join(s.dir, segName(c.seg.seq)))
	s.forget(c.seg)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("auditlog: spool: %w", err)
	}
	return nil
}

// forget drops the oldest sealed segment, seg, from the accounts.
func (s *spool) forget(seg segment) {
	os.Remove(filepath.Join(s.dir, posName(seg.seq)))
	s.mu.Lock()
	s.sealed = s.sealed[1:]
	s.mu.Unlock()
	s.total.Add(-seg.size)
}

// close syncs and closes the active segment and releases the directory.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.active != nil {
		errs = append(errs, s.active.Sync(), s.active.Close())
		s.active = nil
	}
	if s.cur != nil {
		s.cur.f.Close()
		s.cur = nil
	}
	errs = append(errs, s.lock.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("auditlog: spool: %w", err)
	}
	return nil
}
