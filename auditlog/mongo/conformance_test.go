package mongo_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/mongo"
	"github.com/go-defender/defender/conformance"
	"github.com/go-defender/defender/internal/testserver"
)

func TestConformance(t *testing.T) {
	srv := testserver.StartMongoServer(t)
	n := 0
	conformance.RunSink(t, func(t *testing.T) auditlog.Sink {
		n++
		s, err := mongo.New(context.Background(), srv.URI, mongo.Options{Collection: fmt.Sprintf("conformance_%d", n)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
