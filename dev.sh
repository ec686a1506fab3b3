#!/usr/bin/env bash
# The project's two jobs, each setting itself up first (a virtualenv in .venv):
#   ./dev.sh demo   run agentstage's whole story on a throwaway copy of sample-repo/
#   ./dev.sh test   lint (ruff), type-check (mypy --strict) and run the test suite
set -euo pipefail
cd "$(dirname "$0")"

setup() {
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
    touch .venv/.installed
  fi
  # Byte-compiled, as pip leaves an installed package (an editable install is not):
  # under PYTHONDONTWRITEBYTECODE every command would compile the sources again.
  .venv/bin/python -m compileall -q src/agentstage >/dev/null
}

case "${1:-}" in
  demo)
    setup
    PATH="$PWD/.venv/bin:$PATH" bash sample-repo/demo.sh "${@:2}"
    ;;
  test)
    setup
    # The browser tests drive Debian's Chromium (Playwright's own download cannot work
    # here): installed when missing and this may (root with apt-get); else they are skipped.
    if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing Debian's chromium for the browser tests (apt-get)" >&2
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    .venv/bin/ruff check src tests bench
    .venv/bin/mypy
    .venv/bin/python -m pytest "${@:2}"
    ;;
  *)
    echo "usage: ./dev.sh demo | test [pytest args]" >&2
    exit 2
    ;;
esac
