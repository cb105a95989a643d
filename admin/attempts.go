package admin

import (
	"context"
	"net/http"
	"strings"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/defender"
)

// attemptJSON is one record of api/attempts: the audit record with its
// count always present (1 for a single attempt, N for a coalesced record).
type attemptJSON struct {
	auditlog.Record
	Count int64 `json:"count"`
}

// attemptsPage is the JSON of api/attempts.
type attemptsPage struct {
	Attempts []attemptJSON `json:"attempts"`
}

func (h *handler) apiAttempts(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, r, http.StatusMethodNotAllowed, "method not allowed: use GET")
		return
	}
	if h.opts.Attempts == nil {
		h.fail(w, r, http.StatusNotFound, "no audit log configured (DEFENDER_AUDIT_URL)")
		return
	}
	limit, err := limitParam(r, DefaultAttempts, MaxPageSize)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	q := r.URL.Query()
	recs, _, err := h.queryAttempts(r.Context(), q.Get("ip"), q.Get("username"), limit)
	if err != nil {
		h.log.Error("defender admin: audit query failed", "err", err)
		h.fail(w, r, http.StatusServiceUnavailable, "audit log unavailable, try again")
		return
	}
	out := make([]attemptJSON, len(recs))
	for i, rec := range recs {
		out[i] = attemptJSON{Record: rec, Count: rec.Attempts()}
	}
	writeJSON(w, http.StatusOK, attemptsPage{Attempts: out})
}

// queryAttempts returns the newest attempts (at most limit records) from
// ip, when given (exact), and counted under username, when given: the
// records whose canonical username is d.Canonical(username), whatever
// spelling was typed (ALICE and ａｌｉｃｅ count as alice), plus the records
// written before canonical names were stored whose typed username is
// exactly username. It returns the canonical name searched for ("" when
// no username was given).
func (h *handler) queryAttempts(ctx context.Context, ip, username string, limit int) ([]auditlog.Record, string, error) {
	f := auditlog.Filter{IP: strings.TrimSpace(ip), Limit: limit}
	typed := defender.TrimUsername(username)
	if typed == "" {
		recs, err := h.opts.Attempts.Query(ctx, f)
		return recs, "", err
	}
	canon := h.d.Canonical(ctx, typed)
	if canon == "" {
		// Nothing left once canonicalised: search the name as typed
		// (never an empty name, which would match everyone).
		canon = typed
	}
	f.Username = canon
	recs, err := h.opts.Attempts.Query(ctx, f)
	if err != nil || canon == typed {
		return recs, canon, err
	}
	// Old records (no canonical name) are found by their typed name only.
	f.Username = typed
	old, err := h.opts.Attempts.Query(ctx, f)
	if err != nil {
		return nil, canon, err
	}
	return mergeNewest(recs, old, limit), canon, nil
}

// mergeNewest merges two newest-first lists into one, each ID once, at
// most limit records (limit <= 0: all).
func mergeNewest(a, b []auditlog.Record, limit int) []auditlog.Record {
	if len(b) == 0 {
		return a
	}
	seen := make(map[string]bool, len(a)+len(b))
	out := make([]auditlog.Record, 0, len(a)+len(b))
	for _, list := range [][]auditlog.Record{a, b} {
		for _, r := range list {
			if !seen[r.ID] {
				seen[r.ID] = true
				out = append(out, r)
			}
		}
	}
	auditlog.SortNewestFirst(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
