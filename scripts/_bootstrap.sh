# Sourced by scripts/run and scripts/test: creates .venv and installs the project into it,
# again only when pyproject.toml changes. Needs Python 3.11+ with venv.
set -euo pipefail

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv …"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Installing RLHF Studio and its dependencies into .venv …"
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch before the rest, pinned, so that the packages needing it do not pull another build.
  .venv/bin/python -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
  .venv/bin/python -m pip install --quiet -e ".[train,dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

ensure_chromium() {
  # The browser tests drive Debian's Chromium through Playwright (never a downloaded browser).
  if [ -x /usr/bin/chromium ]; then return 0; fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium for the browser tests …"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || {
      apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
    }
  else
    echo "warning: /usr/bin/chromium is missing (apt-get install chromium); browser tests will be skipped" >&2
  fi
}

ensure_test_services() {
  # The tests start their own PostgreSQL cluster and redis-server from the binaries installed here
  # (tests/utils/services.py): PostgreSQL's server (initdb, pg_ctl, postgres) and redis-server.
  local missing=()
  if ! { [ -n "${RLHF_PG_BINDIR:-}" ] && [ -x "$RLHF_PG_BINDIR/initdb" ]; } \
    && ! { command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; } \
    && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null \
    && ! command -v initdb >/dev/null; then
    missing+=(postgresql)
  fi
  command -v redis-server >/dev/null || missing+=(redis-server)
  if [ ${#missing[@]} -eq 0 ]; then return 0; fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "Installing ${missing[*]} for the tests' own servers …"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
      apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    }
  else
    echo "warning: ${missing[*]} missing (apt-get install ${missing[*]}); the tests needing them will be skipped" >&2
  fi
}
