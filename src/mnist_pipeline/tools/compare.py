"""Compare two runs (commits or DVC experiments) as a markdown report with pictures.

    python -m mnist_pipeline compare --rev HEAD~1              # workspace vs HEAD~1
    python -m mnist_pipeline compare --rev main --new exp-a1b2 # two revisions

Writes ``compare.md``, ``compare.json`` (the same numbers, for scripts) and PNGs to ``--out``.
Params and metrics are DVC's own ``params diff`` and ``metrics diff --all``; the other files
are read with ``dvc.api.open(rev=)``.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.errors import PipelineError, shown
from mnist_pipeline.core.io import (
    atomic_dir,
    check_replaceable,
    decode_text,
    parse_csv,
    read_bytes_bounded,
    save_figure,
    validated,
    write_json,
    write_text,
)
from mnist_pipeline.evaluation.scores import SCORES, Metrics
from mnist_pipeline.learning.history import EpochRow
from mnist_pipeline.reporting.figures import bar_chart, heatmap, learning_curves
from mnist_pipeline.reporting.text import escape_md, markdown_table

EVAL = "metrics/eval.json"
PER_CLASS = "metrics/per_class.csv"
CONFUSION = "metrics/confusion_matrix.csv"
TRAIN_LOG = "metrics/train_log.csv"
WORKSPACE = "workspace"
COMPARE_FIGURES = {
    "learning_curves": "learning_curves.png",
    "confusion": "confusion_matrices.png",
    "confusion_diff": "confusion_diff.png",
    "recall": "recall.png",
}
TOP_MOVERS = 5
# What write_report puts in --out: an earlier comparison holds nothing else.
OUTPUTS = ("compare.md", "compare.json", "*.png")
FIX = "; repair it there (`git show REV:FILE`) or compare another revision"
MAX_COUNT = 10**9  # test images in one confusion cell: more than any dataset here holds


def repo_root(start: Path) -> Path:
    """The git work tree holding ``start``."""
    from dvc.scm import SCM, SCMError

    try:
        return Path(SCM(str(start), search_parent_directories=True).root_dir)
    except SCMError as err:
        raise PipelineError(f"{start}: not inside a git repository; run from the project") from err


@dataclass(frozen=True)
class Revision:
    """One side of the comparison: what the user typed, and the commit (None: workspace)."""

    name: str
    commit: str | None

    @property
    def label(self) -> str:
        """``HEAD~1 (1a2b3c4)``, ``1a2b3c4`` for a sha, or ``workspace``."""
        if self.commit is None or self.commit.startswith(self.name):
            return self.name if self.commit is None else self.commit[:7]
        return f"{self.name} ({self.commit[:7]})"


def resolve(repo: Path, rev: str) -> Revision:
    """A git revision or a DVC experiment name -> ``Revision``; one line if it is neither."""
    from dvc.scm import SCM, RevError, resolve_rev

    if rev == WORKSPACE:
        return Revision(WORKSPACE, None)
    scm = SCM(str(repo))
    try:
        sha = resolve_rev(scm, rev)
    except RevError as err:
        raise PipelineError(
            f"unknown revision {shown(rev)}: {err}; name a git commit, branch or tag, or a DVC "
            "experiment (see `git log --oneline`, `dvc exp show`)"
        ) from err
    kind = scm.pygit2.repo[sha].type_str if hasattr(scm, "pygit2") else "commit"
    if kind not in ("commit", "tag"):  # e.g. HEAD:params.yaml, a blob
        raise PipelineError(
            f"--rev {shown(rev)}: names a git {kind}, not a commit; name a commit, branch, tag "
            "or DVC experiment (`HEAD:file` is a file's content)"
        )
    return Revision(rev, sha)


def read_text_at(repo: Path, revision: Revision, path: str) -> str:
    """A file's text in ``revision`` or the working tree, bounded in size like any CSV read."""
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        with dvc.api.open(path, repo=str(repo), rev=revision.commit, mode="rb") as handle:
            data = read_bytes_bounded(handle, f"{revision.label}:{path}", "CSV")
    except (DvcException, OSError) as err:
        if revision.commit is None:
            raise PipelineError(
                f"{path}: file not found in the workspace; run `dvc repro` first"
            ) from err
        raise PipelineError(
            f"{revision.label}: has no {path} committed; compare against a commit made "
            "after `dvc repro` (its metrics are committed to git)"
        ) from err
    return decode_text(data, f"{revision.label}:{path}")


def diffs(repo: Path, old: Revision, new: Revision) -> tuple[dict[str, Any], dict[str, Any]]:
    """``dvc params diff`` and ``dvc metrics diff --all``: ``{file: {key: {old, new, diff}}}``."""
    from dvc.repo import Repo

    revs = [old.commit, new.commit or WORKSPACE]
    logging.disable(logging.WARNING)  # dvc warns of a side it cannot read: the error says it
    try:
        with Repo(str(repo)) as dvc_repo:
            found = [dvc_repo.params.diff(*revs), dvc_repo.metrics.diff(*revs, all=True)]
    finally:
        logging.disable(logging.NOTSET)
    for result in found:
        for rev, errors in result.get("errors", {}).items():
            for what, err in errors.items() if isinstance(errors, dict) else [("", errors)]:
                # A metrics file that only one side has: its metrics are new / removed.
                if not isinstance(err, FileNotFoundError):
                    where = old.label if rev == old.commit else new.label
                    raise PipelineError(
                        f"{where}: cannot read {what or 'dvc.yaml'} ({err}); repair it there "
                        "or compare another revision"
                    )
    return found[0].get("diff", {}), found[1].get("diff", {})


@dataclass(frozen=True)
class RunFiles:
    """The files of one run that the comparison reads."""

    per_class: pd.DataFrame  # index = class; precision, recall, f1, support
    confusion: pd.DataFrame  # [C, C] counts, index = actual, columns = predicted
    history: pd.DataFrame  # one row per epoch: epoch, train_loss, test/val_accuracy


def load_run(repo: Path, revision: Revision) -> RunFiles:
    """One side's per-class scores, confusion matrix and train log, checked: a hand edit or a
    merge conflict left in a file is one line, never a wrong chart."""

    def read(path: str, check: Callable[..., pd.DataFrame], **kwargs: Any) -> pd.DataFrame:
        text, source = read_text_at(repo, revision, path), f"{revision.label}:{path}"
        marker = re.search(r"^(<{7}|={7}|>{7})( |$)", text, re.M)
        if marker:
            line = text.count("\n", 0, marker.start()) + 1
            raise PipelineError(
                f"{source}: holds merge-conflict markers at line {line}; resolve the conflict "
                "(or rerun `dvc repro`) and commit, or compare another revision"
            )
        return check(parse_csv(text, source, **kwargs), source)

    return RunFiles(
        read(PER_CLASS, checked_per_class, dtype={"class": str}),  # "0".."9": class names
        read(CONFUSION, checked_confusion, index_col=0, dtype=str),
        read(TRAIN_LOG, checked_history),
    )


def _refuse(bad: np.ndarray, source: str, say: Callable[[int, int], str]) -> None:
    """One line naming the first cell (row, column) where ``bad`` holds, if any."""
    if bad.any():
        row, column = next(zip(*bad.nonzero(), strict=True))
        raise PipelineError(f"{source}: {say(row, column)}{FIX}")


def _numbers(frame: pd.DataFrame, source: str, count: str = "") -> pd.DataFrame:
    """Every cell a finite number; with ``count`` (what it counts), a whole one up to
    ``MAX_COUNT``."""
    numbers = frame.apply(pd.to_numeric, errors="coerce")
    values = numbers.to_numpy(dtype=float, na_value=np.nan)

    def cell(row: int, column: int) -> str:
        return f"row {shown(frame.index[row])}, column {shown(frame.columns[column])}: "

    _refuse(
        ~np.isfinite(values),
        source,
        lambda r, c: f"{cell(r, c)}{shown(frame.iat[r, c])} is not a finite number",
    )
    if not count:
        return numbers.astype(float)
    _refuse(
        (values != np.round(values)) | (values < 0) | (values > MAX_COUNT),
        source,
        lambda r, c: (
            f"{cell(r, c)}{count} {values[r, c]:g} is not a whole number from 0 to {MAX_COUNT:,}"
        ),
    )
    return numbers.astype("int64")


def _unique_classes(names: pd.Index, source: str, what: str) -> None:
    if names.empty:
        raise PipelineError(f"{source}: no classes{FIX}")
    if names.has_duplicates:
        duplicated = names[names.duplicated()][0]
        raise PipelineError(f"{source}: {what} {shown(duplicated)} appears twice{FIX}")


def checked_per_class(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """``per_class.csv`` indexed by class: scores in [0, 1], supports whole counts."""
    missing = [c for c in ("class", *SCORES, "support") if c not in frame.columns]
    if missing:
        raise PipelineError(
            f"{source}: no column {', '.join(map(shown, missing))} (has "
            f"{', '.join(map(shown, frame.columns))}){FIX}"
        )
    frame = frame.set_index("class")[[*SCORES, "support"]]
    _unique_classes(frame.index, source, "class")
    scores = _numbers(frame[list(SCORES)], source)
    _refuse(
        ((scores < 0) | (scores > 1)).to_numpy(),
        source,
        lambda r, c: (
            f"class {shown(frame.index[r])}: {SCORES[c]} {scores.iat[r, c]:g} is outside 0..1"
        ),
    )
    return scores.assign(support=_numbers(frame[["support"]], source, "support")["support"])


def checked_confusion(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """``confusion_matrix.csv``: square, one row and column per class, whole counts."""
    frame = frame.rename(index=str)
    _unique_classes(frame.index, source, "actual class")
    _unique_classes(frame.columns, source, "predicted class")
    if list(frame.index) != list(frame.columns):
        raise PipelineError(
            f"{source}: rows (actual {', '.join(map(shown, frame.index[:12]))}) and columns "
            f"(predicted {', '.join(map(shown, frame.columns[:12]))}) name different classes{FIX}"
        )
    return _numbers(frame, source, "count")


def checked_history(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """``train_log.csv``: at least one row, each an ``EpochRow``."""
    validated(list[EpochRow], frame.to_dict(orient="records"), source)
    if frame.empty:
        raise PipelineError(f"{source}: no rows{FIX}")
    return frame


def confusion_diff(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame | None:
    """``new - old`` per cell of two confusion frames; None when the class labels differ."""
    if [*old.columns, *old.index] != [*new.columns, *new.index]:
        return None
    return new.astype("int64") - old.astype("int64")


def recall_movers(old: pd.DataFrame, new: pd.DataFrame, top: int = TOP_MOVERS) -> pd.DataFrame:
    """``class, old, new, delta`` of the ``top`` classes (on both sides) whose recall moved
    most, largest ``|delta|`` first, ties in class order; unmoved classes left out."""
    frame = pd.concat([old["recall"], new["recall"]], axis=1, keys=["old", "new"], join="inner")
    frame = frame.astype(float).assign(delta=(frame["new"] - frame["old"]).round(6))
    frame = frame[frame["delta"] != 0]
    frame = frame.loc[frame["delta"].abs().nlargest(top).index]  # nlargest: ties in order
    return frame.rename_axis("class").reset_index()


def _value(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _change(entry: Mapping[str, Any]) -> str:
    """``+0.1``, ``0``, ``new``/``removed`` (only one side has it), or ``changed`` (text)."""
    old, new = entry.get("old"), entry.get("new")
    if old is None or new is None:
        return "new" if old is None else "removed"
    if "diff" in entry and not isinstance(new, bool):  # dvc subtracts numbers only
        return f"{entry['diff']:+.6g}" if entry["diff"] else "0"
    return "changed" if old != new else ""


def diff_rows(diff: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[list[str]]:
    """``diffs``' ``{file: {key: {old, new[, diff]}}}`` -> ``[file, key, old, new, change]``:
    headline metrics first, unchanged text and per-class metrics (the movers table) left out."""
    rank = {name: i for i, name in enumerate(Metrics.names())}
    rows = []
    for file in sorted(diff):
        for key in sorted(diff[file], key=lambda k: (rank.get(k, len(rank)), k)):
            entry = diff[file][key]
            if key.startswith("per_class.") or not _change(entry):
                continue
            rows.append(
                [file, key, _value(entry.get("old")), _value(entry.get("new")), _change(entry)]
            )
    return rows


@dataclass(frozen=True)
class Comparison:
    """Everything the report shows; the derived tables are computed once, when first used."""

    old: Revision
    new: Revision
    params: dict[str, Any]  # {file: {key: {old, new, diff}}}: what changed
    metrics: dict[str, Any]  # {file: {key: {old, new, diff}}}: every metric
    old_run: RunFiles
    new_run: RunFiles

    @cached_property
    def diff(self) -> pd.DataFrame | None:
        return confusion_diff(self.old_run.confusion, self.new_run.confusion)

    @cached_property
    def movers(self) -> pd.DataFrame:
        return recall_movers(self.old_run.per_class, self.new_run.per_class)

    def as_json(self) -> dict[str, Any]:
        """``compare.json``: the numbers of ``compare.md``, for scripts."""
        return {
            "old": {"rev": self.old.name, "commit": self.old.commit},
            "new": {"rev": self.new.name, "commit": self.new.commit},
            "params": self.params,
            "metrics": self.metrics,
            "confusion": {
                "classes": [str(c) for c in self.new_run.confusion.columns],
                "old": self.old_run.confusion.to_numpy().tolist(),
                "new": self.new_run.confusion.to_numpy().tolist(),
                "diff": None if self.diff is None else self.diff.to_numpy().tolist(),
            },
            "recall_movers": self.movers.to_dict(orient="records"),
        }


def compare(repo: Path, old_rev: str, new_rev: str = WORKSPACE) -> Comparison:
    """Read both sides and diff them; ``new_rev`` ``workspace`` is the working tree."""
    old, new = resolve(repo, old_rev), resolve(repo, new_rev)
    if old.commit is None:
        raise PipelineError(
            "--rev: name a git revision or an experiment; the workspace is the default --new"
        )
    old_run, new_run = load_run(repo, old), load_run(repo, new)
    return Comparison(old, new, *diffs(repo, old, new), old_run, new_run)


def _data_line(run: RunFiles) -> str:
    """``1,000 test images in 10 classes (0, 1, …, 9)``: what each side was scored on."""
    n_test, names = int(run.per_class["support"].sum()), ", ".join(run.per_class.index)
    return escape_md(f"{n_test:,} test images in {len(run.per_class)} classes ({names})")


def comparison_markdown(result: Comparison) -> str:
    """``compare.md``: what changed (params), what moved (metrics, classes), the pictures."""
    old, new = result.old.label, result.new.label
    lines = [f"# {escape_md(new)} vs {escape_md(old)}", ""]
    old_data, new_data = _data_line(result.old_run), _data_line(result.new_run)
    if old_data == new_data:
        lines += [f"Both runs: {new_data}.", ""]
    else:
        lines += [
            f"> **Warning:** the runs saw different data — {escape_md(old)}: {old_data}; "
            f"{escape_md(new)}: {new_data}. Their scores are not directly comparable.",
            "",
        ]
    for heading, name, diff, none in (
        ("Params that changed", "param", result.params, "None."),
        ("Metrics", "metric", result.metrics, "No metrics on either side."),
    ):
        table = pd.DataFrame(diff_rows(diff), columns=["file", name, old, new, "change"])
        body = markdown_table(table, index=False) if len(table) else none
        lines += [f"## {heading}", "", body, ""]
    lines += [f"## Classes whose recall moved most (top {TOP_MOVERS})", ""]
    if result.movers.empty:
        lines += ["No class's recall changed."]
    else:
        movers = result.movers.set_index("class")
        movers["delta"] = movers["delta"].map("{:+.4f}".format)  # the other floats: .4f
        lines += [markdown_table(movers.set_axis([old, new, "change"], axis=1))]
    lines += [
        "",
        f"![per-class recall]({COMPARE_FIGURES['recall']})",
        "",
        "## Learning curves",
        "",
        f"![learning curves]({COMPARE_FIGURES['learning_curves']})",
        "",
        "## Confusion matrices (rows = actual, columns = predicted)",
        "",
        f"![confusion matrices]({COMPARE_FIGURES['confusion']})",
        "",
        f"## Confusion difference ({new} − {old}, cell by cell)",
        "",
    ]
    if result.diff is None:
        lines += ["The two runs have different classes; there is no cell-by-cell difference."]
    else:
        signed = result.diff.map(lambda v: f"{v:+d}" if v else "0")
        lines += [
            f"![confusion difference]({COMPARE_FIGURES['confusion_diff']})",
            "",
            "Blue = more test images in that cell, red = fewer. On the diagonal blue is good;",
            "off the diagonal red is good.",
            "",
            markdown_table(signed.rename_axis("actual \\ predicted")),
        ]
    return "\n".join([*lines, ""])


def recall_bars(result: Comparison) -> Figure:
    """Per-class recall of both runs, grouped bars, the change written above each pair."""
    old, new = result.old_run.per_class["recall"], result.new_run.per_class["recall"]
    recall = pd.concat([old, new], axis=1, keys=[result.old.label, result.new.label], join="inner")
    fig = bar_chart(recall, "Per-class recall", "recall", top=1.12, colors=["tab:gray", "tab:blue"])
    deltas = recall.iloc[:, 1] - recall.iloc[:, 0]
    for i, (delta, top) in enumerate(zip(deltas, recall.max(axis=1), strict=True)):
        color = "tab:blue" if delta > 0 else "tab:red" if delta < 0 else "gray"
        text = f"{delta:+.2f}" if round(delta, 2) else "0"
        fig.axes[0].text(i, top + 0.02, text, ha="center", fontsize=7, color=color)
    return fig


def comparison_figures(result: Comparison) -> dict[str, Figure]:
    """The figures, keyed like ``COMPARE_FIGURES`` (no difference heatmap across datasets)."""
    old, new = result.old.label, result.new.label
    runs = [(old, result.old_run), (new, result.new_run)]
    top = max(int(run.confusion.to_numpy().max(initial=0)) for _, run in runs)
    figures = {
        "learning_curves": learning_curves([(label, run.history) for label, run in runs]),
        "confusion": heatmap(
            [(label, run.confusion) for label, run in runs],
            Normalize(vmin=0, vmax=max(top, 1)),
            "Confusion matrices (rows = actual, columns = predicted)",
            label="test images",
        ),
        "recall": recall_bars(result),
    }
    if result.diff is not None:
        # Symmetric limits so white is exactly 0 and equal changes get equal colour strength.
        span = max(int(np.abs(result.diff.to_numpy()).max(initial=0)), 1)
        figures["confusion_diff"] = heatmap(
            [(f"Confusion difference: {new} − {old}", result.diff)],
            TwoSlopeNorm(vcenter=0, vmin=-span, vmax=span),
            "diagonal blue = more right; off-diagonal red = fewer of that mistake",
            label=f"{new} − {old}",
            signed=True,
        )
    return figures


def write_report(result: Comparison, out: Path) -> Path:
    """Replace ``out`` (new, empty or an earlier comparison: ``--out .`` is refused, not
    deleted) with ``compare.md``, ``compare.json`` and the PNGs; return the .md."""
    figures = comparison_figures(result)
    with atomic_dir(out, OUTPUTS) as tmp:
        for name, fig in figures.items():
            save_figure(fig, tmp / COMPARE_FIGURES[name])
        write_json(result.as_json(), tmp / "compare.json")
        write_text(comparison_markdown(result), tmp / "compare.md")
    return out / "compare.md"


@entry_point
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="compare two runs (commits or experiments) as a report",
    )
    parser.add_argument("--rev", required=True, help="old side: a git revision or a DVC experiment")
    parser.add_argument("--new", default=WORKSPACE, help="new side (default: the working tree)")
    parser.add_argument("--out", type=Path, default=Path("compare"), help="output folder")
    args = parser.parse_args(argv)
    check_replaceable(args.out, OUTPUTS)  # before the work, not after it
    result = compare(repo_root(Path.cwd()), args.rev, args.new)
    report = write_report(result, args.out)
    accuracy = result.metrics.get(EVAL, {}).get("accuracy", {})
    if None not in (accuracy.get("old"), accuracy.get("new")):  # None: a side has none
        print(
            f"accuracy {result.old.label} {accuracy['old']:.4f} -> "
            f"{result.new.label} {accuracy['new']:.4f}"
        )
    print(f"compare: {report}")


if __name__ == "__main__":
    raise SystemExit(main())
