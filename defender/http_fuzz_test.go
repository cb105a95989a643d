package defender

import (
	"strings"
	"testing"
)

// FuzzAcceptQ: any Accept header is parsed within its bounds, with
// qualities in [0, 1].
func FuzzAcceptQ(f *testing.F) {
	for _, s := range []string{"application/json", "text/html;q=0.9, application/json;q=0.95", "*/*;q=", ";;;,,,", strings.Repeat("a/b;q=1,", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, accept string) {
		j, h := acceptQ([]string{accept, accept})
		if j < 0 || j > 1 || h < 0 || h > 1 {
			t.Fatalf("acceptQ(%q) = %v, %v", accept, j, h)
		}
	})
}
