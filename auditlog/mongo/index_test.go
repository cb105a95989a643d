package mongo_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	driver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/mongo"
	"github.com/go-defender/defender/internal/testserver"
)

// TestReopen: sinks opened one after the other on one collection (a
// process restarted) all work: creating indexes that exist is harmless.
func TestReopen(t *testing.T) {
	uri := testserver.StartMongo(t)
	for i := 0; i < 3; i++ {
		s := open(t, uri, mongo.Options{})
		now := time.Now()
		if err := s.Write(ctx(t), []auditlog.Record{{ID: auditlog.NewID(now), Time: now}}); err != nil {
			t.Fatalf("sink %d: %v", i, err)
		}
	}
}

// TestRefusedIndex: an index the server refuses (here: the name is taken
// by a different index) is logged, and the sink works without it.
func TestRefusedIndex(t *testing.T) {
	uri := testserver.StartMongo(t)
	client, err := driver.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx(t))
	db := uri[strings.LastIndex(uri, "/")+1:]
	_, err = client.Database(db).Collection(mongo.DefaultCollection).Indexes().CreateOne(ctx(t),
		driver.IndexModel{Keys: bson.D{{Key: "path", Value: 1}}, Options: options.Index().SetName("ip_time")})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	s := open(t, uri, mongo.Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	now := time.Now()
	if err := s.Write(ctx(t), []auditlog.Record{{ID: auditlog.NewID(now), Time: now, IP: "192.0.2.1"}}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Query(ctx(t), auditlog.Filter{IP: "192.0.2.1"}); err != nil || len(got) != 1 {
		t.Errorf("Query = %v, %v", got, err)
	}
	if !strings.Contains(buf.String(), "refused an index") {
		t.Errorf("no warning logged: %s", buf.String())
	}
}

// TestCanonicalAndOldDocuments: the sink creates the (canonical_username,
// time) index; a plain record's document has no canonical_username, count
// or until field (it stays as small as before); documents written before
// those fields existed read back as records without them and are found by
// their exact typed username; a coalesced record's fields are stored.
func TestCanonicalAndOldDocuments(t *testing.T) {
	uri := testserver.StartMongo(t)
	client, err := driver.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx(t))
	coll := client.Database(uri[strings.LastIndex(uri, "/")+1:]).Collection(mongo.DefaultCollection)
	now := time.Now().UTC().Truncate(time.Millisecond)
	// Documents as an earlier version of the sink wrote them.
	old := []any{
		bson.D{{Key: "_id", Value: "old1"}, {Key: "time", Value: now.Add(-2 * time.Second)}, {Key: "ip", Value: "192.0.2.1"},
			{Key: "username", Value: "Alice"}, {Key: "user_agent", Value: "ua"}, {Key: "path", Value: "/login"},
			{Key: "http_accept", Value: "*/*"}, {Key: "login_valid", Value: false}, {Key: "locked", Value: true}},
		bson.D{{Key: "_id", Value: "old2"}, {Key: "time", Value: now.Add(-time.Second)}, {Key: "ip", Value: "192.0.2.1"},
			{Key: "username", Value: "alice"}, {Key: "user_agent", Value: "ua"}, {Key: "path", Value: "/login"},
			{Key: "http_accept", Value: "*/*"}, {Key: "login_valid", Value: false}, {Key: "locked", Value: false}},
	}
	if _, err := coll.InsertMany(ctx(t), old); err != nil {
		t.Fatal(err)
	}
	s := open(t, uri, mongo.Options{})
	plain := auditlog.Record{ID: "new1", Time: now, IP: "192.0.2.1", Username: "ALICE", CanonicalUsername: "alice"}
	flood := auditlog.Record{ID: "new2", Time: now.Add(time.Second), IP: "192.0.2.1", Username: "ａｌｉｃｅ", CanonicalUsername: "alice",
		Locked: true, Count: 4242, Until: now.Add(1999 * time.Millisecond)}
	bare := auditlog.Record{ID: "new3", Time: now.Add(2 * time.Second), IP: "192.0.2.9", Username: "bob"}
	if err := s.Write(ctx(t), []auditlog.Record{plain, flood, bare}); err != nil {
		t.Fatal(err)
	}

	var raw bson.M
	if err := coll.FindOne(ctx(t), bson.D{{Key: "_id", Value: "new3"}}).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"canonical_username", "count", "until", "fail_mode"} {
		if _, ok := raw[f]; ok {
			t.Errorf("a plain record's document has %s: %v", f, raw)
		}
	}
	if err := coll.FindOne(ctx(t), bson.D{{Key: "_id", Value: "new2"}}).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if raw["canonical_username"] != "alice" || raw["count"] != int64(4242) {
		t.Errorf("coalesced record's document: %v", raw)
	}

	ids := func(f auditlog.Filter) string {
		t.Helper()
		got, err := s.Query(ctx(t), f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range got {
			out = append(out, r.ID)
		}
		return strings.Join(out, ",")
	}
	for _, c := range []struct {
		f    auditlog.Filter
		want string
	}{
		{auditlog.Filter{Username: "alice"}, "new2,new1,old2"}, // every spelling counted as alice, and the old record typed alice
		{auditlog.Filter{Username: "Alice"}, "old1"},           // the old record by its exact typed name
		{auditlog.Filter{Username: "ALICE"}, ""},               // new records are found by their canonical name only
		{auditlog.Filter{Username: "bob"}, "new3"},             // a new record without a canonical name: by its typed name
	} {
		if got := ids(c.f); got != c.want {
			t.Errorf("Query(%+v) = %q, want %q", c.f, got, c.want)
		}
	}
	got, err := s.Query(ctx(t), auditlog.Filter{IP: "192.0.2.1", Limit: 4})
	if err != nil || len(got) != 4 {
		t.Fatalf("Query = %v, %v", got, err)
	}
	if r := got[3]; r.ID != "old1" || r.Count != 0 || !r.Until.IsZero() || r.CanonicalUsername != "" || r.Username != "Alice" || !r.Locked {
		t.Errorf("old document read back as %+v", r)
	}
	if r := got[0]; r.Count != 4242 || !r.Until.Equal(flood.Until) || r.Until.Location() != time.UTC {
		t.Errorf("coalesced record read back as %+v", r)
	}

	cur, err := coll.Indexes().List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var idx []bson.M
	if err := cur.All(ctx(t), &idx); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ix := range idx {
		if ix["name"] == "canonical_username_time" {
			found = true
		}
	}
	if !found {
		t.Errorf("no canonical_username_time index: %v", idx)
	}
}
