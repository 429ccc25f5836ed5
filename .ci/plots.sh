#!/usr/bin/env bash
# The offline-plots check of `make ci` (and of .github/workflows/pipeline.yml): headless
# Chromium, with every network request failing, must draw every plot of `dvc plots show`
# and `dvc plots diff` from the vega builds inlined in vendor/vega/plots.html
# (tests/test_plots_offline.py).
#
# The browser: .ci/debian.sh finds one or installs Debian's chromium where it can; where
# nothing can be installed the test is skipped and says why, and this script does not fail.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

"$repo/.ci/debian.sh"

PYTHONPATH="$repo/src" "$repo/.venv/bin/python" -m pytest -q -rs -p no:cacheprovider \
  tests/test_plots_offline.py
