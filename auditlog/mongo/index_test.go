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
