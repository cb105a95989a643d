#!/usr/bin/env bash
# Runs every Fuzz target of the library module, and of the nested modules
# that hold fuzz targets (internal/faulttest: store URLs with every backend
# registered, the admin handler's inputs), for the given time each.
set -euo pipefail
t=${1:-3s}
root=$(pwd)
for mod in . internal/faulttest; do
  cd "$root/$mod"
  for pkg in $(go list ./...); do
    dir=$(go list -f '{{.Dir}}' "$pkg")
    for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
      echo "== fuzz $pkg $f ($t)"
      go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg"
    done
  done
done
