package testserver

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func ping(t *testing.T, uri string) error {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	db := uri[strings.LastIndex(uri, "/")+1:]
	if i := strings.IndexByte(db, '?'); i >= 0 {
		db = db[:i]
	}
	_, err = c.Database(db).Collection("c").InsertOne(ctx, bson.D{{Key: "x", Value: 1}})
	return err
}

// TestMongo: the FerretDB server starts, stops, and starts again with the
// same address; through DEFENDER_TEST_MONGO_URI the same works via the
// proxy.
func TestMongo(t *testing.T) {
	m := StartMongoServer(t)
	if err := ping(t, m.URI); err != nil {
		t.Fatalf("insert into a fresh server: %v", err)
	}
	m.Stop()
	if err := ping(t, m.URI); err == nil {
		t.Error("insert succeeded with the server stopped")
	}
	m.Start()
	if err := ping(t, m.URI); err != nil {
		t.Fatalf("insert after the restart: %v", err)
	}

	t.Run("external", func(t *testing.T) {
		t.Setenv(MongoURIEnv, "mongodb://"+m.Addr)
		ext := StartMongoServer(t)
		if ext.URI == m.URI || !strings.Contains(ext.URI, "directConnection=true") {
			t.Errorf("external URI %q", ext.URI)
		}
		if StartMongo(t) == ext.URI {
			t.Error("two calls share a database")
		}
		if err := ping(t, ext.URI); err != nil {
			t.Fatalf("insert through the proxy: %v", err)
		}
		ext.Stop()
		if err := ping(t, ext.URI); err == nil {
			t.Error("insert succeeded with the proxy stopped")
		}
		ext.Start()
		if err := ping(t, ext.URI); err != nil {
			t.Fatalf("insert after the proxy restarted: %v", err)
		}
	})
}
