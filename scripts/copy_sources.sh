# Sourced by scripts that build in a scratch copy of the repo (bash).
# copy_sources REPO DEST: copies REPO's sources (tracked + untracked, not ignored; never build/,
# dist/, .venv*, *.so, __pycache__, *.egg-info) into DEST, so that a build there can neither use
# nor overwrite the checkout's own build outputs (an extension built against another torch).
copy_sources() {
  local repo="$1" dest="$2"
  mkdir -p "$dest"
  if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # -c: tracked (even if matched by .gitignore), -o --exclude-standard: untracked, not ignored.
    # Deleted-but-tracked files are skipped by the existence test.
    (cd "$repo" && git ls-files -z -c -o --exclude-standard) \
      | grep -zvE '(^|/)(build|\.venv[^/]*|dist)/|\.so$|(^|/)__pycache__/|\.egg-info/' \
      | (cd "$repo" && while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done) \
      | (cd "$repo" && tar --null -T - -cf -) | tar -xf - -C "$dest"
  else
    (cd "$repo" && tar -cf - --exclude=./build --exclude='*.so' --exclude='./.venv*' \
      --exclude=./dist --exclude=__pycache__ --exclude='*.egg-info' --exclude=./.git .) \
      | tar -xf - -C "$dest"
  fi
}
