package admin

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/defender"
)

var funcs = template.FuncMap{
	"until": untilText,
	"ago":   agoText,
	"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"unix":  func(t time.Time) int64 { return t.Unix() },
}

// untilText says when a block ends: "in 45 s", "in 4 min", "in 2 h 5 min",
// "in 3 days".
func untilText(seconds int64) string {
	return "in " + span(seconds)
}

// agoText says how long ago t was, relative to now.
func agoText(now, t time.Time) string {
	s := int64(now.Sub(t).Round(time.Second) / time.Second)
	if s < 5 {
		return "just now"
	}
	return span(s) + " ago"
}

// span spells a duration in seconds, coarsely.
func span(s int64) string {
	switch {
	case s < 60:
		if s < 0 {
			s = 0
		}
		return fmt.Sprintf("%d s", s)
	case s < 3600:
		return fmt.Sprintf("%d min", (s+59)/60)
	case s < 86400:
		h, m := s/3600, (s%3600+59)/60
		if m == 60 {
			h, m = h+1, 0
		}
		if m == 0 {
			return fmt.Sprintf("%d h", h)
		}
		return fmt.Sprintf("%d h %d min", h, m)
	default:
		d := (s + 43200) / 86400
		if d == 1 {
			return "1 day"
		}
		return fmt.Sprintf("%d days", d)
	}
}

// pageData is what templates/index.html renders.
type pageData struct {
	Now                     time.Time
	Cfg                     defender.Config
	LimitIP, LimitUser      int
	IPOn, UserOn, PairMode  bool
	IPs, Users, Pairs       []defender.BlockInfo
	ShowPairs               bool
	Cursor, Next            string
	NextURL                 string
	Complete                bool // this page is the whole list
	BlocksErr               string
	Flash                   string
	FlashNone               bool
	AuditOn                 bool
	Attempts                []auditlog.Record
	AttemptsErr             string
	SearchIP, SearchUser    string
	SearchCanon             string // the canonical name the username search is for
	Searching               bool
	PageSize, AttemptsLimit int
	Forget                  string
}

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, r, http.StatusMethodNotAllowed, "method not allowed: use GET")
		return
	}
	q := r.URL.Query()
	cfg := h.d.Config()
	p := pageData{
		Now:           h.opts.Now(),
		Cfg:           cfg,
		LimitIP:       limitOr(cfg.FailureLimitIP, cfg.FailureLimit),
		LimitUser:     limitOr(cfg.FailureLimitUsername, cfg.FailureLimit),
		PairMode:      cfg.LockOutByIPAndUsername,
		IPOn:          !cfg.LockOutByIPAndUsername && !cfg.DisableIPLockout,
		UserOn:        !cfg.LockOutByIPAndUsername && !cfg.DisableUsernameLockout,
		Cursor:        q.Get("cursor"),
		PageSize:      h.opts.PageSize,
		AttemptsLimit: DefaultAttempts,
		SearchIP:      strings.TrimSpace(q.Get("ip")),
		SearchUser:    strings.TrimSpace(q.Get("username")),
		AuditOn:       h.opts.Attempts != nil,
	}
	switch ac := cfg.AttemptCooloffTime; {
	case ac == defender.UseCooloffTime:
		p.Forget = "failures are forgotten after " + span(int64(cfg.CooloffTime/time.Second)) + " without a new one"
	case ac == 0:
		p.Forget = "failures are never forgotten"
	default:
		p.Forget = "failures are forgotten after " + span(int64((ac+time.Second-1)/time.Second)) + " without a new one"
	}
	p.Searching = p.SearchIP != "" || p.SearchUser != ""
	if kind := q.Get("done"); kind != "" {
		p.Flash = flashText(kind, q.Get("fip"), q.Get("fuser"))
		p.FlashNone = q.Get("none") != ""
	}

	blocks, next, err := h.d.Blocks(r.Context(), p.Cursor, h.opts.PageSize)
	switch {
	case err != nil && errors.Is(err, backend.ErrInvalid):
		p.BlocksErr = "That page link is not valid (a bad cursor). Start again from the first page."
	case err != nil:
		h.log.Error("defender admin: store error", "op", "list blocks", "err", err)
		p.BlocksErr = "The store did not answer, so the blocks cannot be listed right now. Reload to try again."
	}
	for _, b := range blocks {
		switch b.Kind {
		case defender.KindIP:
			p.IPs = append(p.IPs, b)
		case defender.KindUsername:
			p.Users = append(p.Users, b)
		default:
			p.Pairs = append(p.Pairs, b)
		}
	}
	// Soonest unblock first, permanent blocks last (the tables say so).
	for _, list := range [][]defender.BlockInfo{p.IPs, p.Users, p.Pairs} {
		sort.SliceStable(list, func(i, j int) bool {
			a, b := list[i], list[j]
			if a.Permanent != b.Permanent {
				return b.Permanent
			}
			return a.SecondsRemaining < b.SecondsRemaining
		})
	}
	p.Next = next
	p.Complete = p.Cursor == "" && next == "" && err == nil
	p.ShowPairs = p.PairMode || len(p.Pairs) > 0
	if next != "" {
		nq := url.Values{}
		nq.Set("cursor", next)
		if p.SearchIP != "" {
			nq.Set("ip", p.SearchIP)
		}
		if p.SearchUser != "" {
			nq.Set("username", p.SearchUser)
		}
		p.NextURL = "./?" + nq.Encode()
	}
	if h.opts.Attempts != nil {
		recs, canon, err := h.queryAttempts(r.Context(), p.SearchIP, p.SearchUser, DefaultAttempts)
		p.SearchCanon = canon
		if err != nil {
			h.log.Error("defender admin: audit query failed", "err", err)
			p.AttemptsErr = "The audit log did not answer. Reload to try again."
		}
		p.Attempts = recs
	}

	var buf bytes.Buffer
	if err := h.tmpl.ExecuteTemplate(&buf, "index.html", p); err != nil {
		h.log.Error("defender admin: template", "err", err)
		h.fail(w, r, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}

func limitOr(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// flashText describes a finished unblock for the page's notice.
func flashText(kind, ip, user string) string {
	switch defender.Kind(kind) {
	case defender.KindIP:
		return "IP " + ip
	case defender.KindUsername:
		return "username “" + user + "”"
	case defender.KindPair:
		return "username “" + user + "” from IP " + ip
	}
	return "identity"
}
