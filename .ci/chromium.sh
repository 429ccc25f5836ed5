#!/usr/bin/env bash
# A headless browser for the browser tests (tests/test_plots_offline.py, tests/test_serve.py),
# found as the tests find it: $CHROMIUM if set, else chromium / chromium-browser /
# google-chrome on PATH. With none, Debian's `chromium` is installed when this can be done
# (apt-get, as root or through password-less sudo): one `apt-get update`, then the install;
# a browser already there is left alone. Where nothing can be installed the tests skip and
# say why, and this script does not fail for it. .ci/run calls it before `make test`.
set -euo pipefail

find_browser() {  # $CHROMIUM (the test uses it as given), or one on PATH
  [[ -n "${CHROMIUM:-}" ]] \
    || command -v chromium chromium-browser google-chrome google-chrome-stable >/dev/null 2>&1
}

if ! find_browser; then
  as_root=()
  [[ "$(id -u)" -eq 0 ]] || as_root=(sudo -n)
  if command -v apt-get >/dev/null 2>&1 && "${as_root[@]}" true 2>/dev/null; then
    echo "ci: installing Debian's chromium for the browser tests"
    if ! { "${as_root[@]}" apt-get update -qq \
      && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
        >/dev/null; }; then
      echo "ci: warning: could not install chromium; the browser tests will be skipped" >&2
    fi
  else
    echo "ci: warning: no browser and no apt-get as root; the browser tests will be skipped" >&2
  fi
fi

