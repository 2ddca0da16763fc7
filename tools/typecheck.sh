#!/usr/bin/env bash
# mypy over the installed namespace. The repository's folders install as `streamrec.models`, `streamrec.stream`,
# ... (package-dir mapping), which mypy cannot follow from the checkout, so this lays the same tree out as
# symbolic links under .cache/typecheck and checks it there. Errors name the files by their installed paths
# (streamrec/models/... is models/...).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
view=.cache/typecheck
rm -rf "$view/streamrec" && mkdir -p "$view/streamrec"
for entry in streamrec/*; do ln -s "$root/$entry" "$view/streamrec/"; done
for pkg in models stream consumers producers; do ln -s "$root/$pkg" "$view/streamrec/$pkg"; done
cd "$view"
exec "$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" -p streamrec "$@"
