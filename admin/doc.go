// Package admin serves the defender administration pages and their JSON API:
// the blocked IPs, usernames and (IP, username) pairs with their failure
// counts and the time left on each block, the recent login attempts from the
// audit log with a search by IP or username, and unblock buttons.
//
// Mount the handler wherever the application wants, stripping the prefix:
//
//	h, err := admin.New(d, admin.Options{Authorize: admin.BasicAuth("admin", secret)})
//	mux.Handle("/admin/defender/", http.StripPrefix("/admin/defender", h))
//
// # Security
//
// The admin can unblock anyone, so it is never served without an access
// check: New refuses a nil Options.Authorize (ErrNoAuthorizer). BasicAuth
// is a ready authorizer; applications with their own sessions pass a
// function that looks at the request.
//
// Unblocking is a POST (405 for any other method) and is refused for
// cross-origin requests by net/http's CrossOriginProtection: a browser's
// Sec-Fetch-Site header must say same-origin (or none, for a typed URL),
// or, for browsers that do not send it, the Origin header must match the
// Host. Requests with neither header (curl, scripts) are not browser
// requests and are accepted once authorized. Identifiers travel in the
// POST body, never in URL paths, so IPv6 addresses and prefixes, "/", "+",
// "%", spaces, emoji and markup round-trip untouched; html/template escapes
// them on the page.
//
// Every response is Cache-Control: no-store and cannot be framed
// (X-Frame-Options: DENY and frame-ancestors 'none'); the
// Content-Security-Policy allows only the admin's own embedded stylesheet
// and script, so a username such as <script>…</script> that made it into a
// block can never run.
//
// # Recent attempts
//
// The attempts table and api/attempts search by IP (exact) and by
// username as the lockout counts it: the search term is canonicalised
// with Defender.Canonical (case folding, NFKC, the Resolver), so "alice"
// finds the attempts typed "ALICE" or "ａｌｉｃｅ"; records written before
// the audit log stored canonical names are found by their exact typed
// name. A coalesced record (the locked attempts of one identity within a
// window, recorded as one) shows its count as a "×37" pill, and
// api/attempts gives every record a "count" (1 for a single attempt).
//
// # Mount point
//
// No redirect the admin emits leaves its mount point: the embedded assets
// have exact routes (no directory, no FileServer redirects), a path that
// http.ServeMux would clean and redirect ("//x", "/assets/../x") is a 404,
// and the mount point without its trailing slash is redirected by a
// relative reference ("./defender/") to the mount point with it.
//
// # Pagination
//
// Listing never loads the whole store: the page shows one page of
// Defender.Blocks (Options.PageSize) with a link to the next, and
// api/blocks takes ?cursor= and ?limit= and returns the next cursor ("" at
// the end).
package admin
