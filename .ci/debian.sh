#!/usr/bin/env bash
# Debian packages the tests use, installed where they can be:
# - a headless browser for the browser tests (tests/test_plots_offline.py,
#   tests/test_serve.py), found as the tests find it: $CHROMIUM if set, else chromium /
#   chromium-browser / google-chrome on PATH; else Debian's `chromium`;
# - qemu-user (`qemu-x86_64`), which runs the stages as another vendor's CPU
#   (tests/test_portability.py).
# What is there is left alone; what is missing is installed with one `apt-get update`
# (as root or through password-less sudo). Where nothing can be installed the tests that
# need it skip and say why, and this script does not fail for it. .ci/run calls it before
# `make test`.
set -euo pipefail

missing=()
[[ -n "${CHROMIUM:-}" ]] \
  || command -v chromium chromium-browser google-chrome google-chrome-stable >/dev/null 2>&1 \
  || missing+=(chromium)
command -v qemu-x86_64 >/dev/null 2>&1 || missing+=(qemu-user)
[[ ${#missing[@]} -eq 0 ]] && exit 0

as_root=()
[[ "$(id -u)" -eq 0 ]] || as_root=(sudo -n)
if command -v apt-get >/dev/null 2>&1 && "${as_root[@]}" true 2>/dev/null; then
  echo "ci: installing Debian's ${missing[*]} for the tests"
  if ! { "${as_root[@]}" apt-get update -qq \
    && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" \
      >/dev/null; }; then
    echo "ci: warning: could not install ${missing[*]}; the tests that need it will be skipped" >&2
  fi
else
  echo "ci: warning: no ${missing[*]} and no apt-get as root; the tests that need it will be skipped" >&2
fi
