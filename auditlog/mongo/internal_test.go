package mongo

import (
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestOnlyDuplicates(t *testing.T) {
	we := func(codes ...int) mongo.BulkWriteException {
		var e mongo.BulkWriteException
		for _, c := range codes {
			e.WriteErrors = append(e.WriteErrors, mongo.BulkWriteError{WriteError: mongo.WriteError{Code: c}})
		}
		return e
	}
	withWC := we(11000)
	withWC.WriteConcernError = &mongo.WriteConcernError{Code: 64}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"duplicates", we(11000, 11000, 11001), true},
		{"one validation error", we(11000, 121), false},
		{"write concern error", withWC, false},
		{"no write errors", we(), false},
		{"not a bulk write error", errors.New("connection refused"), false},
	}
	for _, c := range cases {
		if got := onlyDuplicates(c.err); got != c.want {
			t.Errorf("%s: onlyDuplicates = %v, want %v", c.name, got, c.want)
		}
	}
}
