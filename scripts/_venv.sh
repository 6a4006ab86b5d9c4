# Sourced by scripts/run and scripts/test: make .venv and install the requirements when they
# changed since the last install. Needs Python 3.11+ on the PATH (python3.11, python3.12, ...).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SYNCTV_VENV:-$ROOT/.venv}"
REQ_FILE="${1:-requirements.txt}"

if [ ! -x "$VENV/bin/python" ]; then
  PY=""
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      PY="$candidate"; break
    fi
  done
  [ -n "$PY" ] || { echo "SyncTV needs Python 3.11 or newer" >&2; exit 1; }
  echo "creating $VENV with $PY" >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi

# Reinstall only when a requirements file changed (stamp = hash of every requirements*.txt).
STAMP="$VENV/.synctv-requirements-$(basename "$REQ_FILE" .txt)"
WANT="$(cat "$ROOT"/requirements*.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  echo "installing $REQ_FILE into $VENV" >&2
  "$VENV/bin/python" -m pip install -q -r "$ROOT/$REQ_FILE"
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
