package mongo_test

import (
	"context"
	"fmt"
	"time"

	"github.com/go-defender/defender/auditlog"
	_ "github.com/go-defender/defender/auditlog/mongo" // the mongodb:// scheme
)

func Example() {
	ctx := context.Background()
	sink, err := auditlog.Open(ctx, "mongodb://127.0.0.1:27017/defender?collection=access_attempts&ttl=24h")
	if err != nil {
		panic(err)
	}
	defer sink.Close()
	w, err := auditlog.NewWriter(sink, auditlog.WriterOptions{SpoolDir: "/var/lib/defender/audit-spool"})
	if err != nil {
		panic(err)
	}
	defer w.Close(ctx)
	w.Record(auditlog.Record{IP: "203.0.113.7", Username: `{"$ne": null}`}) // stored as a plain string

	recent, err := sink.Query(ctx, auditlog.Filter{Since: time.Now().Add(-time.Hour), Limit: 20})
	fmt.Println(len(recent), err)
}
