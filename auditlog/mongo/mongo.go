package mongo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/go-defender/defender/auditlog"
)

// Defaults.
const (
	// DefaultDatabase is used when the URL names no database.
	DefaultDatabase = "defender"
	// DefaultCollection is used when the URL has no collection parameter.
	DefaultCollection = "access_attempts"
	// DefaultTimeout is the deadline of each operation (URL: timeout=).
	DefaultTimeout = 5 * time.Second
	// DefaultServerSelectionTimeout replaces the driver's 30 s default
	// (URL: serverSelectionTimeoutMS=).
	DefaultServerSelectionTimeout = 2 * time.Second
)

func init() {
	auditlog.Register("mongodb", openURL)
	auditlog.Register("mongodb+srv", openURL)
}

// Options configures a Sink beyond its connection string.
type Options struct {
	// Database and Collection name where records go (defaults above).
	Database, Collection string
	// TTL, when positive, asks for a TTL index on time so that the server
	// removes records older than TTL by itself (URL: ttl=24h). Servers
	// that refuse TTL indexes (FerretDB) get a plain index and a warning:
	// run `defender cleanup` (DeleteBefore) from cron instead.
	TTL time.Duration
	// Timeout is the deadline of each operation (default DefaultTimeout).
	Timeout time.Duration
	// Logger receives warnings (TTL unsupported). Nil: slog.Default().
	Logger *slog.Logger
}

var _ auditlog.Sink = (*Sink)(nil)

// Sink stores records in a MongoDB collection, one document per record
// with the record's ID as _id, so a replayed record is a duplicate-key
// error that Write ignores. It is safe for concurrent use.
type Sink struct {
	client   *mongo.Client
	coll     *mongo.Collection
	opts     Options
	log      *slog.Logger
	redacted string
	password string

	mu        sync.Mutex
	indexed   bool
	ttlActive bool
	closed    bool
}

// our own query parameters; every other one must be a driver option.
var ownParams = []string{"collection", "ttl", "timeout"}

func openURL(ctx context.Context, u *url.URL) (auditlog.Sink, error) {
	var opts Options
	q := u.Query()
	if v := q.Get("collection"); v != "" {
		opts.Collection = v
	} else if q.Has("collection") {
		return nil, auditlog.Errorf(u, "collection is empty")
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"ttl", &opts.TTL}, {"timeout", &opts.Timeout}} {
		if !q.Has(d.name) {
			continue
		}
		v, err := time.ParseDuration(q.Get(d.name))
		if err != nil || v <= 0 {
			return nil, auditlog.Errorf(u, "%s=%q is not a positive duration", d.name, q.Get(d.name))
		}
		*d.dst = v
	}
	for _, p := range ownParams {
		q.Del(p)
	}
	u2 := *u
	u2.RawQuery = q.Encode()
	return New(ctx, u2.String(), opts)
}

// New returns a Sink for the MongoDB connection string uri (its path names
// the database unless opts.Database is set). It does not wait for the
// server: indexes are created by the first operation that reaches it.
// Unknown connection-string options are an auditlog.ErrInvalidURL error.
func New(_ context.Context, uri string, opts Options) (*Sink, error) {
	redacted := auditlog.Redact(uri)
	cs, err := connstring.ParseAndValidate(uri)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %s", auditlog.ErrInvalidURL, redacted, strings.ReplaceAll(err.Error(), uri, redacted))
	}
	if len(cs.UnknownOptions) > 0 {
		names := make([]string, 0, len(cs.UnknownOptions))
		for n := range cs.UnknownOptions {
			names = append(names, n)
		}
		return nil, fmt.Errorf("%w %q: unknown query parameter(s) %s", auditlog.ErrInvalidURL, redacted, strings.Join(names, ", "))
	}
	if opts.Database == "" {
		opts.Database = cs.Database
	}
	if opts.Database == "" {
		opts.Database = DefaultDatabase
	}
	if opts.Collection == "" {
		opts.Collection = DefaultCollection
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	co := options.Client().ApplyURI(uri)
	if !cs.ServerSelectionTimeoutSet {
		co.SetServerSelectionTimeout(DefaultServerSelectionTimeout)
	}
	if !cs.ConnectTimeoutSet {
		co.SetConnectTimeout(DefaultServerSelectionTimeout)
	}
	client, err := mongo.Connect(co)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %s", auditlog.ErrInvalidURL, redacted, strings.ReplaceAll(err.Error(), uri, redacted))
	}
	return &Sink{
		client:   client,
		coll:     client.Database(opts.Database).Collection(opts.Collection),
		opts:     opts,
		log:      log,
		redacted: redacted,
		password: cs.Password,
	}, nil
}

// doc is the stored form of a record.
// The optional fields (canonical_username, count, until) are absent when
// empty: records of a plain attempt stay as small as before, and a record
// written before they existed reads back the same as one without them.
type doc struct {
	ID        string    `bson:"_id"`
	Time      time.Time `bson:"time"`
	IP        string    `bson:"ip"`
	Username  string    `bson:"username"`
	Canonical string    `bson:"canonical_username,omitempty"`
	UserAgent string    `bson:"user_agent"`
	Path      string    `bson:"path"`
	Accept    string    `bson:"http_accept"`
	Success   bool      `bson:"login_valid"`
	Locked    bool      `bson:"locked"`
	FailMode  string    `bson:"fail_mode,omitempty"`
	Refused   string    `bson:"refused,omitempty"`
	Count     int64     `bson:"count,omitempty"`
	Until     time.Time `bson:"until,omitempty"`
}

func toDoc(r auditlog.Record) doc {
	return doc{ID: r.ID, Time: r.Time, IP: r.IP, Username: r.Username, Canonical: r.CanonicalUsername, UserAgent: r.UserAgent,
		Path: r.Path, Accept: r.Accept, Success: r.Success, Locked: r.Locked, FailMode: r.FailMode, Refused: r.Refused, Count: r.Count, Until: r.Until}
}

func (d doc) record() auditlog.Record {
	r := auditlog.Record{ID: d.ID, Time: d.Time.UTC(), IP: d.IP, Username: d.Username, CanonicalUsername: d.Canonical,
		UserAgent: d.UserAgent, Path: d.Path, Accept: d.Accept, Success: d.Success, Locked: d.Locked, FailMode: d.FailMode,
		Refused: d.Refused, Count: d.Count}
	if !d.Until.IsZero() {
		r.Until = d.Until.UTC()
	}
	return r
}

// TTLActive reports whether the server accepted the TTL index (false until
// the first successful operation, and when Options.TTL is zero).
func (s *Sink) TTLActive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ttlActive
}

// begin checks the sink is open, returns the operation's context and makes
// sure the indexes exist.
func (s *Sink) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, auditlog.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	if !s.indexed {
		if err := s.ensureIndexes(ctx); err != nil {
			cancel()
			return nil, nil, s.wrap("creating indexes", err)
		}
		s.indexed = true
	}
	return ctx, cancel, nil
}

// ensureIndexes creates the indexes one at a time (FerretDB v1 fails on a
// createIndexes command that names several existing indexes). Only a
// network failure is an error (the operation is retried later): an index
// the server refuses is logged and skipped, since indexes only make queries
// fast; idempotence rests on _id, which is always unique.
func (s *Sink) ensureIndexes(ctx context.Context) error {
	iv := s.coll.Indexes()
	transient := func(err error) bool { return ctx.Err() != nil || isNetwork(err) }
	if s.opts.TTL > 0 {
		ttl := mongo.IndexModel{Keys: bson.D{{Key: "time", Value: 1}},
			Options: options.Index().SetName("time_ttl").SetExpireAfterSeconds(int32(s.opts.TTL / time.Second))}
		_, err := iv.CreateOne(ctx, ttl)
		switch {
		case err == nil:
			s.ttlActive = true
		case transient(err):
			return err
		default:
			s.log.Warn("audit sink: the server refused a TTL index; run `defender cleanup` periodically to remove old records",
				"url", s.redacted, "err", err)
		}
	}
	models := []mongo.IndexModel{
		{Keys: bson.D{{Key: "canonical_username", Value: 1}, {Key: "time", Value: -1}}, Options: options.Index().SetName("canonical_username_time")},
		{Keys: bson.D{{Key: "username", Value: 1}, {Key: "time", Value: -1}}, Options: options.Index().SetName("username_time")},
		{Keys: bson.D{{Key: "ip", Value: 1}, {Key: "time", Value: -1}}, Options: options.Index().SetName("ip_time")},
	}
	if !s.ttlActive {
		models = append(models, mongo.IndexModel{Keys: bson.D{{Key: "time", Value: -1}}, Options: options.Index().SetName("time")})
	}
	for _, m := range models {
		if _, err := iv.CreateOne(ctx, m); err != nil {
			if transient(err) {
				return err
			}
			s.log.Warn("audit sink: the server refused an index; queries may be slow", "url", s.redacted, "err", err)
		}
	}
	return nil
}

func isNetwork(err error) bool {
	return mongo.IsNetworkError(err) || mongo.IsTimeout(err) || errors.Is(err, mongo.ErrClientDisconnected) ||
		strings.Contains(err.Error(), "server selection")
}

// wrap marks a driver error as auditlog.ErrUnavailable, without the URL's
// password (should the driver ever quote it).
func (s *Sink) wrap(op string, err error) error {
	msg := strings.TrimSpace(err.Error())
	if s.password != "" {
		msg = strings.ReplaceAll(msg, s.password, "xxxxx")
	}
	return fmt.Errorf("%w: auditlog/mongo %s: %s", auditlog.ErrUnavailable, op, msg)
}

// Write inserts the records (unordered, so one duplicate does not stop the
// rest) and ignores duplicate-key errors: a record already stored, replayed
// from the spool, is not stored twice, whatever the time between.
func (s *Sink) Write(ctx context.Context, records []auditlog.Record) error {
	if len(records) == 0 {
		return nil
	}
	docs := make([]any, len(records))
	for i, r := range records {
		if r.ID == "" {
			return fmt.Errorf("%w: auditlog/mongo: record without an ID", auditlog.ErrInvalidConfig)
		}
		docs[i] = toDoc(r)
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil || onlyDuplicates(err) {
		return nil
	}
	return s.wrap("insert", err)
}

// onlyDuplicates reports whether every failure in err is a duplicate key.
func onlyDuplicates(err error) bool {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return false
	}
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 && we.Code != 11001 && we.Code != 12582 {
			return false
		}
	}
	return true
}

// Query returns the matching records newest first. The filter is built from
// the Filter's values as BSON values: a username such as {"$ne": null} or
// "$where" is a string compared for equality, never an operator.
func (s *Sink) Query(ctx context.Context, f auditlog.Filter) ([]auditlog.Record, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	filter := bson.D{}
	if f.IP != "" {
		filter = append(filter, bson.E{Key: "ip", Value: bson.D{{Key: "$eq", Value: f.IP}}})
	}
	if f.Username != "" {
		// auditlog.Filter.Username: the canonical name, or the typed one
		// for records without a canonical name (written before the field
		// existed). Each branch has its index.
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "canonical_username", Value: bson.D{{Key: "$eq", Value: f.Username}}}},
			bson.D{
				{Key: "canonical_username", Value: bson.D{{Key: "$exists", Value: false}}},
				{Key: "username", Value: bson.D{{Key: "$eq", Value: f.Username}}},
			},
		}})
	}
	if !f.Since.IsZero() {
		filter = append(filter, bson.E{Key: "time", Value: bson.D{{Key: "$gte", Value: f.Since}}})
	}
	fo := options.Find().SetSort(bson.D{{Key: "time", Value: -1}, {Key: "_id", Value: -1}})
	if f.Limit > 0 {
		fo.SetLimit(int64(f.Limit))
	}
	cur, err := s.coll.Find(ctx, filter, fo)
	if err != nil {
		return nil, s.wrap("find", err)
	}
	var docs []doc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, s.wrap("find", err)
	}
	out := make([]auditlog.Record, len(docs))
	for i, d := range docs {
		out[i] = d.record()
	}
	return out, nil
}

// DeleteBefore removes the records with time < t.
func (s *Sink) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	res, err := s.coll.DeleteMany(ctx, bson.D{{Key: "time", Value: bson.D{{Key: "$lt", Value: t}}}})
	if err != nil {
		return 0, s.wrap("delete", err)
	}
	return res.DeletedCount, nil
}

// Close disconnects from the server (waiting at most Options.Timeout).
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return auditlog.ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	if err := s.client.Disconnect(ctx); err != nil {
		return s.wrap("disconnect", err)
	}
	return nil
}
