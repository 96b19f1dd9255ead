# Sourced by scripts/run, scripts/test and scripts/rlhf: creates .venv and installs the project into
# it, again only when pyproject.toml changes, printing one line per package. Needs Python 3.11+ with
# venv. With RLHF_BOOTSTRAP=web only the web app's dependencies are installed here (scripts/run
# then installs the rest in the background with `install_training_stack`).
set -euo pipefail

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv …"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
web_stamp=".venv/.web-installed-$(sha256sum pyproject.toml | cut -c1-16)"

pip_progress() {
  # pip install, printing one line per package as pip collects it, then the summary (the whole
  # output when it fails).
  local - log status
  set +e
  log=$(mktemp)
  .venv/bin/python -m pip install --progress-bar off "$@" 2>&1 | tee "$log" \
    | grep --line-buffered -E '^(Collecting|Processing|Installing collected|Successfully installed)' \
    | sed -u -E 's/^Collecting ([^ ]+).*/  collected \1/; s/^Processing .*\/([^/ ]+)$/  collected \1/;
                 s/^Successfully installed (.*)/  installed: \1/; s/^(.{150}).+/\1 …/'
  status=${PIPESTATUS[0]}
  if [ "$status" != 0 ]; then grep -v "^WARNING: Location" "$log" >&2; fi
  rm -f "$log"
  return "$status"
}

install_training_stack() {
  # torch before the rest, pinned, so that the packages needing it do not pull another build.
  echo "Installing torch ${TORCH_VERSION:-2.13.0} …"
  pip_progress "torch==${TORCH_VERSION:-2.13.0}" || return 1
  echo "Installing the training stack and the development tools (transformers, trl, peft, pytest …) …"
  pip_progress -e ".[train,dev]" || return 1
  rm -f .venv/.installed-* .venv/.web-installed-*
  touch "$web_stamp" "$stamp"
  echo "The training stack is installed."
}

if [ ! -f "$stamp" ]; then
  if [ ! -f "$web_stamp" ]; then
    echo "Installing RLHF Studio's web app and its dependencies into .venv …"
    .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
    pip_progress -e .
    touch "$web_stamp"
  fi
  if [ "${RLHF_BOOTSTRAP:-all}" != "web" ]; then
    install_training_stack
  fi
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
