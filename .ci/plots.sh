#!/usr/bin/env bash
# The offline-plots check of `make ci` (and of .github/workflows/pipeline.yml): headless
# Chromium, with every network request failing, must draw every plot of `dvc plots show`
# and `dvc plots diff` from the vega builds inlined in vendor/vega/plots.html
# (tests/test_plots_offline.py).
#
# A browser is found as the test finds it: $CHROMIUM if set, else chromium /
# chromium-browser / google-chrome on PATH. With none, Debian's `chromium` is installed
# when this can be done (apt-get, as root or through password-less sudo): one
# `apt-get update`, then the install; a browser already there is left alone. Where nothing
# can be installed the test is skipped and says why, and this script does not fail for it.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

find_browser() {  # $CHROMIUM (the test uses it as given), or one on PATH
  [[ -n "${CHROMIUM:-}" ]] \
    || command -v chromium chromium-browser google-chrome google-chrome-stable >/dev/null 2>&1
}

if ! find_browser; then
  as_root=()
  [[ "$(id -u)" -eq 0 ]] || as_root=(sudo -n)
  if command -v apt-get >/dev/null 2>&1 && "${as_root[@]}" true 2>/dev/null; then
    echo "ci: installing Debian's chromium for the offline-plots test"
    if ! { "${as_root[@]}" apt-get update -qq \
      && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
        >/dev/null; }; then
      echo "ci: warning: could not install chromium; the offline-plots test will be skipped" >&2
    fi
  else
    echo "ci: warning: no browser and no apt-get as root; the offline-plots test will be skipped" >&2
  fi
fi

PYTHONPATH="$repo/src" "$repo/.venv/bin/python" -m pytest -q -rs -p no:cacheprovider \
  tests/test_plots_offline.py
