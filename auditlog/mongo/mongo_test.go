package mongo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	driver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/mongo"
	"github.com/go-defender/defender/internal/testserver"
)

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func open(t testing.TB, uri string, opts mongo.Options) *mongo.Sink {
	t.Helper()
	s, err := mongo.New(context.Background(), uri, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenURL(t *testing.T) {
	uri := testserver.StartMongo(t) // mongodb://127.0.0.1:port/test_...
	cases := []struct {
		url  string
		ok   bool
		text string
	}{
		{uri + "?collection=c1&ttl=24h&timeout=3s", true, ""},
		{uri + "?serverSelectionTimeoutMS=500&connectTimeoutMS=500&appName=x", true, ""},
		{"mongodb://127.0.0.1:1", true, ""},
		{uri + "?bogus=1", false, "unknown query parameter(s) bogus"},
		{uri + "?ttl=soon", false, `ttl="soon"`},
		{uri + "?timeout=-1s", false, "timeout"},
		{uri + "?collection=", false, "collection is empty"},
		{"mongodb://user:s3cret@127.0.0.1:1/db?authMechanism=NOPE", false, "NOPE"},
		{"mongodb://user:s3cret@/db", false, ""},
		{"mongodb://user:s3cret@127.0.0.1:1/?heartbeatFrequencyMS=100", false, "heartbeat"},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			s, err := auditlog.Open(context.Background(), c.url)
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				return
			}
			if !errors.Is(err, auditlog.ErrInvalidURL) || !strings.Contains(err.Error(), c.text) {
				t.Errorf("Open = %v, want ErrInvalidURL mentioning %q", err, c.text)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

// TestInjection: usernames that are MongoDB operators or JSON documents are
// plain strings: they match themselves only, and never select other records.
func TestInjection(t *testing.T) {
	s := open(t, testserver.StartMongo(t), mongo.Options{})
	now := time.Now().UTC()
	names := []string{"alice", `{"$ne": null}`, "$where", `{"$where": "sleep(1000) || true"}`, `{"$gt": ""}`, "$regex"}
	var recs []auditlog.Record
	for i, n := range names {
		recs = append(recs, auditlog.Record{ID: auditlog.NewID(now), Time: now.Add(time.Duration(i) * time.Millisecond), IP: n, Username: n})
	}
	if err := s.Write(ctx(t), recs); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		for _, f := range []auditlog.Filter{{Username: n}, {IP: n}} {
			got, err := s.Query(ctx(t), f)
			if err != nil {
				t.Fatalf("Query(%+v): %v", f, err)
			}
			if len(got) != 1 || got[0].Username != n {
				t.Errorf("Query(%+v) = %d records, want only the one stored under %q", f, len(got), n)
			}
		}
	}
}

// TestTTL: a TTL index is asked for; the server either takes it or the
// sink says so and logs a warning (FerretDB v1 refuses TTL indexes or
// ignores them: cleanup covers it).
func TestTTL(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	s := open(t, testserver.StartMongo(t), mongo.Options{TTL: time.Hour, Logger: log})
	if s.TTLActive() {
		t.Error("TTLActive before any operation")
	}
	if _, err := s.Query(ctx(t), auditlog.Filter{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("TTL index accepted: %v; log: %s", s.TTLActive(), buf.String())
	if !s.TTLActive() && !strings.Contains(buf.String(), "refused a TTL index") {
		t.Error("TTL refused without a warning")
	}
}

// TestServerDown: with no server, operations fail fast (server selection
// timeout, not the driver's 30 s) with ErrUnavailable.
func TestServerDown(t *testing.T) {
	uri := "mongodb://u:s3cret@" + testserver.Addr(testserver.FreePort(t)) + "/x"
	s := open(t, uri, mongo.Options{})
	start := time.Now()
	err := s.Write(context.Background(), []auditlog.Record{{ID: auditlog.NewID(start), Time: start}})
	took := time.Since(start)
	if !errors.Is(err, auditlog.ErrUnavailable) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Write with no server = %v, want ErrUnavailable without the password", err)
	}
	if took > 5*time.Second {
		t.Errorf("Write took %v with no server, want about %v", took, mongo.DefaultServerSelectionTimeout)
	}
	t.Logf("Write with no server failed after %v", took)
	if _, err := s.Query(context.Background(), auditlog.Filter{}); !errors.Is(err, auditlog.ErrUnavailable) {
		t.Errorf("Query = %v", err)
	}
	if _, err := s.DeleteBefore(context.Background(), start); !errors.Is(err, auditlog.ErrUnavailable) {
		t.Errorf("DeleteBefore = %v", err)
	}
	if err := s.Write(context.Background(), []auditlog.Record{{}}); !errors.Is(err, auditlog.ErrInvalidConfig) {
		t.Errorf("Write without an ID = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := s.Close(); !errors.Is(err, auditlog.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
}

// TestWriterOutage: the MongoDB server is stopped for a while during
// 10,000 records and started again: every record arrives exactly once.
func TestWriterOutage(t *testing.T) {
	srv := testserver.StartMongoServer(t)
	s := open(t, srv.URI, mongo.Options{Timeout: time.Minute}) // reading 10,000 records back can be slow on a loaded machine
	w, err := auditlog.NewWriter(s, auditlog.WriterOptions{
		SpoolDir: filepath.Join(t.TempDir(), "spool"),
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	const total = 10000
	ids := make([]string, 0, total)
	var lat []time.Duration
	send := func(from, to int) {
		for i := from; i < to; i++ {
			r := auditlog.Record{ID: auditlog.NewID(time.Now()), Time: time.Now(), IP: fmt.Sprintf("10.0.%d.%d", i/256, i%256), Username: "u"}
			ids = append(ids, r.ID)
			t0 := time.Now()
			w.Record(r)
			lat = append(lat, time.Since(t0))
		}
	}
	send(0, 2000)
	srv.Stop()
	send(2000, 8000)
	deadline := time.Now().Add(time.Minute)
	for w.Stats().SinkErrors < 2 && time.Now().Before(deadline) { // down for a while: two failed attempts
		time.Sleep(5 * time.Millisecond)
	}
	var maxDown time.Duration
	for _, d := range lat[2000:8000] {
		maxDown = max(maxDown, d)
	}
	srv.Start()
	send(8000, total)
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := w.Flush(c); err != nil {
		t.Fatalf("Flush: %v (%+v)", err, w.Stats())
	}
	if err := w.Close(c); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	t.Logf("stats: %+v; max Record latency while the server was down: %v", st, maxDown)
	if maxDown > 500*time.Millisecond {
		t.Errorf("Record took %v with the server down: it waited for the sink (server selection takes %v)", maxDown, mongo.DefaultServerSelectionTimeout)
	}
	if st.SinkErrors == 0 || st.Spooled == 0 || st.Dropped != 0 {
		t.Errorf("stats %+v: want sink errors, spooled records, no drops", st)
	}
	got, err := s.Query(ctx(t), auditlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, r := range got {
		count[r.ID]++
	}
	missing, dup := 0, 0
	for _, id := range ids {
		switch count[id] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	t.Logf("%d records sent, %d stored: %d missing, %d duplicated", total, len(got), missing, dup)
	if missing != 0 || dup != 0 || len(got) != total {
		t.Error("want every record exactly once")
	}
}

// TestConcurrentReplays: the same batch written by several goroutines at
// once is stored once.
func TestConcurrentReplays(t *testing.T) {
	s := open(t, testserver.StartMongo(t), mongo.Options{Collection: "replays"})
	now := time.Now().UTC()
	var batch []auditlog.Record
	for i := 0; i < 50; i++ {
		batch = append(batch, auditlog.Record{ID: auditlog.NewID(now), Time: now})
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Write(ctx(t), batch); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := s.Query(ctx(t), auditlog.Filter{})
	if err != nil || len(got) != len(batch) {
		t.Errorf("Query = %d records, %v; want %d", len(got), err, len(batch))
	}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestServerStops: a sink whose server goes away fails fast with
// ErrUnavailable and works again once the server is back.
func TestServerStops(t *testing.T) {
	srv := testserver.StartMongoServer(t)
	s := open(t, srv.URI, mongo.Options{Timeout: 3 * time.Second})
	now := time.Now().UTC()
	r := auditlog.Record{ID: auditlog.NewID(now), Time: now, Username: "\xffinvalid utf-8"}
	err := s.Write(ctx(t), []auditlog.Record{r})
	t.Logf("Write of invalid UTF-8: %v", err)
	r.ID, r.Username = auditlog.NewID(now), "ok"
	if err := s.Write(ctx(t), []auditlog.Record{r}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := s.Query(ctx(t), auditlog.Filter{}); !errors.Is(err, auditlog.ErrUnavailable) {
		t.Errorf("Query with the server stopped = %v", err)
	}
	if _, err := s.DeleteBefore(ctx(t), now); !errors.Is(err, auditlog.ErrUnavailable) {
		t.Errorf("DeleteBefore with the server stopped = %v", err)
	}
	srv.Start()
	got, err := s.Query(ctx(t), auditlog.Filter{Username: "ok"})
	if err != nil || len(got) != 1 {
		t.Errorf("Query after the restart = %v, %v", got, err)
	}
	// A document someone else put in the collection, that is not a record.
	client, err := driver.Connect(options.Client().ApplyURI(srv.URI))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	db := strings.TrimPrefix(srv.URI[strings.LastIndex(srv.URI, "/"):], "/")
	if _, err := client.Database(db).Collection(mongo.DefaultCollection).InsertOne(ctx(t), bson.D{{Key: "_id", Value: "zzz"}, {Key: "time", Value: now}, {Key: "username", Value: 42}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Query(ctx(t), auditlog.Filter{}); !errors.Is(err, auditlog.ErrUnavailable) {
		t.Errorf("Query over a foreign document = %v, want a decoding error", err)
	}
}

func testserverStart(t *testing.T) *testserver.Mongo { return testserver.StartMongoServer(t) }
