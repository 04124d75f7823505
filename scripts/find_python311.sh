#!/usr/bin/env bash
# Prints the path of a Python 3.11 interpreter (bpy==5.0.1 and Blender 4.2-5.0 embed 3.11), or fails.
set -u
for cand in python3.11 "$(command -v pyenv >/dev/null 2>&1 && pyenv which python3.11 2>/dev/null)" \
            "$(command -v uv >/dev/null 2>&1 && uv python find 3.11 2>/dev/null)" python3 python; do
  [ -n "$cand" ] || continue
  p=$(command -v "$cand" 2>/dev/null) || continue
  if "$p" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
    echo "$p"; exit 0
  fi
done
echo "error: Python 3.11 not found. bpy==5.0.1 and Blender 4.2-5.0 need exactly 3.11." >&2
echo "Install it (e.g. 'pyenv install 3.11', 'uv python install 3.11' or your OS package python3.11) and rerun 'make setup'." >&2
exit 1
