#!/usr/bin/env bash
# Set up genaug's environment if it is missing or stale, then run one job in it.
#   ./run.sh demo [ARGS...]   run `genaug demo` on the pocket world
#   ./run.sh test [ARGS...]   run the test suite (pytest arguments pass through)
#   ./run.sh genaug ARGS...   any genaug command
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${GENAUG_VENV:-$here/.venv}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python="$candidate"; break; fi
  done
fi
[ -n "$python" ] || { echo "run.sh: no python3.11 or python3 on PATH" >&2; exit 1; }

stamp_of() { cat "$here/constraints.txt" "$here/pyproject.toml" | sha256sum | cut -c1-16; }
extras="test"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.genaug-stamp" 2>/dev/null)" != "$(stamp_of)" ]; then
  echo "run.sh: setting up $venv (first time: a few minutes)" >&2
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet -c "$here/constraints.txt" -e "$here[$extras]"
  stamp_of > "$venv/.genaug-stamp"
fi

# Browser tests of the HTML report use Debian's Chromium and ChromeDriver.
need_browser() {
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && return 0
  command -v apt-get >/dev/null 2>&1 || { echo "run.sh: no apt-get; browser tests will be skipped" >&2; return 0; }
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "run.sh: installing chromium and chromium-driver for the report's browser test" >&2
  $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq chromium chromium-driver >/dev/null \
    || echo "run.sh: could not install chromium; browser tests will be skipped" >&2
}

# Figures draw class names in any script: Debian's Noto CJK fonts give matplotlib the glyphs
# (without them Chinese or Japanese names come out as boxes, told apart only by a number).
need_cjk_font() {
  compgen -G "/usr/share/fonts/opentype/noto/NotoSansCJK*" >/dev/null && return 0
  command -v fc-list >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi "Noto Sans CJK" && return 0
  command -v apt-get >/dev/null 2>&1 || { echo "run.sh: no apt-get; figures will not draw CJK class names" >&2; return 0; }
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "run.sh: installing fonts-noto-cjk so that figures draw CJK class names" >&2
  $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq fonts-noto-cjk >/dev/null \
    || echo "run.sh: could not install fonts-noto-cjk; figures will not draw CJK class names" >&2
}

# Idle OpenMP threads sleep instead of spinning: on a small shared CPU, spinning threads
# of one process starve the others (measured: 2-thread runs up to 10x slower without it).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

job="${1:-demo}"; shift || true
case "$job" in
  demo)   need_cjk_font; exec "$venv/bin/genaug" demo "$@" ;;
  test)   need_browser; need_cjk_font; cd "$here" && exec "$venv/bin/python" -m pytest "$@" ;;
  genaug) need_cjk_font; exec "$venv/bin/genaug" "$@" ;;
  *) echo "run.sh: unknown job '$job' (demo | test | genaug ...)" >&2; exit 2 ;;
esac
