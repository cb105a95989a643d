package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// BasicAuth returns an authorizer for Options.Authorize that accepts HTTP
// Basic credentials equal to user and password. The comparison takes the
// same time whatever the guess (both sides are hashed, then compared in
// constant time). An empty password accepts nobody.
func BasicAuth(user, password string) func(*http.Request) bool {
	wantU := sha256.Sum256([]byte(user))
	wantP := sha256.Sum256([]byte(password))
	empty := password == ""
	return func(r *http.Request) bool {
		u, p, ok := r.BasicAuth()
		if !ok || empty {
			return false
		}
		gotU := sha256.Sum256([]byte(u))
		gotP := sha256.Sum256([]byte(p))
		return subtle.ConstantTimeCompare(gotU[:], wantU[:])&subtle.ConstantTimeCompare(gotP[:], wantP[:]) == 1
	}
}
