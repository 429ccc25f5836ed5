"""Compare two runs — two commits, or two experiments — as a markdown report with pictures.

    python -m mnist_pipeline compare --rev HEAD~1              # workspace vs HEAD~1
    python -m mnist_pipeline compare --rev main --new exp-a1b2 # two revisions
    make compare REV=HEAD~1                                    # the same, via make

``--rev`` (and ``--new``) take any git revision (sha, branch, tag, ``HEAD~1``) or the name
of a DVC experiment (``dvc exp show``). Without ``--new`` the "new" side is the working
tree as it is now, e.g. right after ``dvc repro`` or ``dvc exp run -S train.lr=0.1``.

Writes ``compare/compare.md`` (``--out`` changes the folder) with the params that changed
and every metric (each metrics file that ``dvc.yaml`` declares) as tables, the classes
whose recall moved most (each side's ``metrics/per_class.csv``), and PNGs: both learning
curves on one plot, both confusion matrices, their cell-by-cell difference ``new - old``
as a diverging heatmap, and per-class recall. ``compare.json`` beside it holds the same
numbers for scripts. The folder is not ``reports/``: that is the report stage's DVC output.

Both sides are read through ``dvc.api`` (``params_show``, ``metrics_show``, ``read`` with
``rev=``), so whatever metrics a run has are compared. This module is a tool, not a stage.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import (
    atomic_dir,
    parse_csv,
    save_figure,
    write_json,
    write_text,
)
from mnist_pipeline.evaluation.scores import Metrics
from mnist_pipeline.reporting.report import accuracy_column, draw_cells, epoch_ticks, markdown_table
from mnist_pipeline.reporting.text import escape_md

EVAL = "metrics/eval.json"
PER_CLASS = "metrics/per_class.csv"
CONFUSION = "metrics/confusion_matrix.csv"
TRAIN_LOG = "metrics/train_log.csv"
WORKSPACE = "workspace"
FIGURES = {
    "learning_curves": "learning_curves.png",
    "confusion": "confusion_matrices.png",
    "confusion_diff": "confusion_diff.png",
    "recall": "recall.png",
}
TOP_MOVERS = 5
# Headline metrics first in the metrics table, in Metrics' order.
HEADLINE = Metrics.names()


# ---------------------------------------------------------------------------- dvc.api


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
    def short(self) -> str:
        """``HEAD~1``, ``workspace``, or 7 hex digits for a sha: table column headers."""
        if self.commit is not None and self.commit.startswith(self.name):
            return self.commit[:7]
        return self.name

    @property
    def label(self) -> str:
        """``HEAD~1 (1a2b3c4)``: titles and legends name the commit too."""
        if self.commit is None or self.short == self.commit[:7]:
            return self.short
        return f"{self.name} ({self.commit[:7]})"


def resolve(repo: Path, rev: str) -> Revision:
    """A git revision or a DVC experiment name -> ``Revision``; one line if it is neither."""
    from dvc.scm import SCM, RevError, resolve_rev

    if rev == WORKSPACE:
        return Revision(WORKSPACE, None)
    try:
        return Revision(rev, resolve_rev(SCM(str(repo)), rev))
    except RevError as err:
        raise PipelineError(
            f"unknown revision {rev!r}: {err}; name a git commit, branch or tag, or a DVC "
            "experiment (see `git log --oneline`, `dvc exp show`)"
        ) from err


def read_text_at(repo: Path, revision: Revision, path: str) -> str:
    """A file's text in ``revision``, or in the working tree (``dvc.api.read``)."""
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        return str(dvc.api.read(path, repo=str(repo), rev=revision.commit))
    except (DvcException, OSError) as err:
        if revision.commit is None:
            raise PipelineError(
                f"{path}: file not found in the workspace; run `dvc repro` first"
            ) from err
        raise PipelineError(
            f"{revision.label}: has no {path} committed; compare against a commit made "
            "after `dvc repro` (its metrics are committed to git)"
        ) from err


def flat(tree: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}`` (lists stay values)."""
    return pd.json_normalize(dict(tree), sep=".").iloc[0].to_dict() if tree else {}


def dvc_diff(old: Mapping[str, Any], new: Mapping[str, Any], everything: bool) -> dict[str, Any]:
    """``{key: {old, new[, diff]}}`` as ``dvc {params,metrics} diff --json`` writes it."""
    found = {}
    for key in dict.fromkeys([*old, *new]):
        before, after = old.get(key), new.get(key)
        if before == after and not everything:
            continue
        entry = {"old": before, "new": after}
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (before, after)):
            entry["diff"] = after - before
        found[key] = entry
    return found


def diffs(repo: Path, old: Revision, new: Revision) -> tuple[dict[str, Any], dict[str, Any]]:
    """Params that changed (``params.yaml``) and every metric, per metrics file."""
    import dvc.api

    files = {  # the metrics files either side's dvc.yaml declares
        entry if isinstance(entry, str) else next(iter(entry))
        for revision in (old, new)
        for stage in yaml.safe_load(read_text_at(repo, revision, "dvc.yaml"))["stages"].values()
        for entry in stage.get("metrics", [])
    }

    def show(function: Any, revision: Revision, *targets: str) -> dict[str, Any]:
        try:
            return flat(function(*targets, repo=str(repo), rev=revision.commit))
        except FileNotFoundError:
            return {}  # a metrics file this side does not have: its metrics are new/removed
        except Exception as err:  # dvc.api raises many kinds; each is one line here
            what = ", ".join(targets) or "params"
            raise PipelineError(f"{revision.label}: cannot read {what} ({err})") from err

    params = dvc_diff(*(show(dvc.api.params_show, r) for r in (old, new)), everything=False)
    metrics = {
        file: dvc_diff(*(show(dvc.api.metrics_show, r, file) for r in (old, new)), everything=True)
        for file in sorted(files)
    }
    return {"params.yaml": params} if params else {}, metrics


@dataclass(frozen=True)
class RunFiles:
    """The files of one run that the comparison reads."""

    per_class: dict[str, dict[str, float]]  # class -> precision, recall, f1, support
    confusion: pd.DataFrame  # [C, C] counts, index = actual, columns = predicted
    history: pd.DataFrame  # one row per epoch: epoch, train_loss, test/val_accuracy


def load_run(repo: Path, revision: Revision) -> RunFiles:
    """The per-class scores, the confusion matrix and the train log of one side."""
    where = revision.label

    def text(path: str) -> tuple[str, str]:
        return read_text_at(repo, revision, path), f"{where}:{path}"

    per_class = parse_csv(*text(PER_CLASS), dtype={"class": str})  # "0".."9" stay names
    scores = per_class.set_index("class").to_dict(orient="index")
    confusion = parse_csv(*text(CONFUSION), index_col=0)  # 0..9 are ints on the index
    confusion = confusion.rename(index=str, columns=str).rename_axis("actual")
    return RunFiles(scores, confusion, parse_csv(*text(TRAIN_LOG)))


# ---------------------------------------------------------------------- pure functions


def confusion_diff(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Cell by cell ``new - old`` of two ``[C, C]`` confusion frames with the same classes.

    Positive on the diagonal = more test images right; positive off it = more of that
    mistake. Raises when the class labels differ (e.g. another dataset).
    """
    old, new = (frame.rename(index=str, columns=str) for frame in (old, new))
    if [*old.columns, *old.index] != [*new.columns, *new.index]:
        raise PipelineError(
            f"the confusion matrices have different classes ({', '.join(old.columns)} vs "
            f"{', '.join(new.columns)}); no cell-by-cell difference"
        )
    return (new.astype("int64") - old.astype("int64")).rename_axis("actual")


def recall_movers(
    old: Mapping[str, Mapping[str, float]],
    new: Mapping[str, Mapping[str, float]],
    top: int = TOP_MOVERS,
) -> pd.DataFrame:
    """The ``top`` classes whose recall changed most (``per_class.csv``'s rows by class).

    Columns ``class, old, new, delta`` (``delta = new - old``), largest ``|delta|`` first,
    ties in class order; classes that did not move are left out; only classes on both sides.
    """
    rows = [
        {
            "class": name,
            "old": float(old[name]["recall"]),
            "new": float(new[name]["recall"]),
            "delta": round(float(new[name]["recall"]) - float(old[name]["recall"]), 6),
        }
        for name in new
        if name in old
    ]
    frame = pd.DataFrame(rows, columns=["class", "old", "new", "delta"])
    frame = frame[frame["delta"] != 0]
    order = frame["delta"].abs().sort_values(ascending=False, kind="stable").index
    return frame.loc[order].head(top).reset_index(drop=True)


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _change(entry: Mapping[str, Any]) -> str:
    """``+0.1``, ``0``, ``new``/``removed`` (only one side has it), or ``changed`` (text)."""
    if entry.get("old") is None or entry.get("new") is None:
        return "new" if entry.get("old") is None else "removed"
    diff = entry.get("diff")
    if isinstance(diff, int | float) and not isinstance(diff, bool):
        return f"{diff:+.6g}" if diff else "0"
    return "changed" if entry.get("old") != entry.get("new") else ""


def params_rows(diff: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[list[str]]:
    """``{file: {key: {old, new}}}`` (as ``dvc params diff --json``) -> ``[param, old, new]``."""
    rows = []
    for file in sorted(diff):
        for key in sorted(diff[file]):
            entry = diff[file][key]
            name = key if file == "params.yaml" else f"{file}:{key}"
            rows.append([name, _value(entry.get("old")), _value(entry.get("new"))])
    return rows


def metrics_rows(diff: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[list[str]]:
    """``{file: {key: {old, new, diff}}}`` -> ``[file, metric, old, new, change]`` rows.

    Headline metrics first, then the rest alphabetically; per-class ones are left to the
    movers table (``per_class.<class>.<score>`` would be 40 rows for MNIST).
    """
    rows = []
    for file in sorted(diff):
        keys = [k for k in diff[file] if not k.startswith("per_class.")]
        rank = {name: i for i, name in enumerate(HEADLINE)}
        for key in sorted(keys, key=lambda k: (rank.get(k, len(rank)), k)):
            entry = diff[file][key]
            if "diff" not in entry and entry.get("old") == entry.get("new"):
                continue  # an unchanged non-number: nothing to show
            rows.append(
                [file, key, _value(entry.get("old")), _value(entry.get("new")), _change(entry)]
            )
    return rows


# -------------------------------------------------------------------------------- figures


def learning_curves(old: pd.DataFrame, new: pd.DataFrame, old_label: str, new_label: str) -> Figure:
    """Train loss and test (or validation) accuracy per epoch, both runs on each panel."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for history, label, style in (
        (old, old_label, {"color": "tab:gray", "linestyle": "--", "marker": "s"}),
        (new, new_label, {"color": "tab:blue", "linestyle": "-", "marker": "o"}),
    ):
        column = accuracy_column(history)
        scored_on = "" if column == "test_accuracy" else f" ({column})"
        ax_loss.plot(history["epoch"], history["train_loss"], label=label, **style)
        ax_acc.plot(history["epoch"], history[column], label=label + scored_on, **style)
    ax_loss.set(xlabel="epoch", ylabel="mean train loss", title="Train loss")
    scored_on = "Test" if accuracy_column(new).startswith("test") else "Validation"
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title=f"{scored_on} accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        epoch_ticks(ax, pd.concat([old["epoch"], new["epoch"]]))
    return fig


def confusion_pair(old: pd.DataFrame, new: pd.DataFrame, old_label: str, new_label: str) -> Figure:
    """Both confusion matrices side by side on one colour scale, counts in the cells."""
    size = max(4.5, 0.45 * len(old) + 1.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size), layout="constrained")
    top = max(int(old.to_numpy().max()), int(new.to_numpy().max()), 1)
    norm = Normalize(vmin=0, vmax=top)
    for ax, frame, label in ((axes[0], old, old_label), (axes[1], new, new_label)):
        image = draw_cells(ax, frame, "Blues", norm)
        ax.set_title(label)
    fig.colorbar(image, ax=axes, shrink=0.8, label="test images")
    fig.suptitle("Confusion matrices (rows = actual, columns = predicted)")
    return fig


def confusion_diff_heatmap(diff: pd.DataFrame, old_label: str, new_label: str) -> Figure:
    """``new - old`` per cell on a diverging scale centred at 0: blue = more, red = fewer."""
    size = max(5.0, 0.55 * len(diff) + 2)
    fig, ax = plt.subplots(figsize=(size + 1.2, size), layout="constrained")
    # Symmetric limits so white is exactly 0 and equal changes get equal colour strength.
    span = max(int(np.abs(diff.to_numpy()).max()), 1)
    norm = TwoSlopeNorm(vcenter=0, vmin=-span, vmax=span)
    image = draw_cells(ax, diff, "RdBu", norm, signed=True)
    fig.colorbar(image, ax=ax, shrink=0.8, label=f"{new_label} − {old_label}")
    ax.set_title(
        f"Confusion difference: {new_label} − {old_label}\n"
        "diagonal blue = more right; off-diagonal red = fewer of that mistake",
        fontsize=10,
    )
    return fig


def recall_bars(
    old: Mapping[str, Mapping[str, float]],
    new: Mapping[str, Mapping[str, float]],
    old_label: str,
    new_label: str,
) -> Figure:
    """Per-class recall of both runs, grouped bars, the change written above each pair."""
    classes = [name for name in new if name in old]
    x = np.arange(len(classes))
    old_recall = np.array([old[name]["recall"] for name in classes])
    new_recall = np.array([new[name]["recall"] for name in classes])
    fig, ax = plt.subplots(figsize=(max(7.0, 0.8 * len(classes) + 2), 3.8), layout="constrained")
    ax.bar(x - 0.2, old_recall, 0.4, label=old_label, color="tab:gray")
    ax.bar(x + 0.2, new_recall, 0.4, label=new_label, color="tab:blue")
    for i, delta in enumerate(new_recall - old_recall):
        top = max(old_recall[i], new_recall[i])
        color = "tab:blue" if delta > 0 else "tab:red" if delta < 0 else "gray"
        text = f"{delta:+.2f}" if round(delta, 2) else "0"
        ax.text(i, top + 0.02, text, ha="center", fontsize=7, color=color)
    ax.set_xticks(x, classes, rotation=45 if len(classes) > 10 else 0)
    ax.set(xlabel="class", ylabel="recall", ylim=(0, 1.12), title="Per-class recall")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


# ---------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Comparison:
    """Everything the report shows, computed once."""

    old: Revision
    new: Revision
    params: dict[str, Any]  # {file: {key: {old, new, diff}}}: what changed
    metrics: dict[str, Any]  # {file: {key: {old, new, diff}}}: every metric
    old_run: RunFiles
    new_run: RunFiles
    diff: pd.DataFrame | None  # new - old per cell; None when the classes differ
    movers: pd.DataFrame

    def as_json(self) -> dict[str, Any]:
        """The numbers of ``compare.md`` for scripts and tests (``compare.json``)."""
        confusion: dict[str, Any] = {
            "classes": [str(c) for c in self.new_run.confusion.columns],
            "old": self.old_run.confusion.to_numpy().tolist(),
            "new": self.new_run.confusion.to_numpy().tolist(),
            "diff": None if self.diff is None else self.diff.to_numpy().tolist(),
        }
        return {
            "old": {"rev": self.old.name, "commit": self.old.commit},
            "new": {"rev": self.new.name, "commit": self.new.commit},
            "params": self.params,
            "metrics": self.metrics,
            "confusion": confusion,
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
    params, metrics = diffs(repo, old, new)
    try:
        diff = confusion_diff(old_run.confusion, new_run.confusion)
    except PipelineError:
        diff = None  # another dataset: the report shows both matrices and says so
    return Comparison(
        old=old,
        new=new,
        params=params,
        metrics=metrics,
        old_run=old_run,
        new_run=new_run,
        diff=diff,
        movers=recall_movers(old_run.per_class, new_run.per_class),
    )


def _data_line(run: RunFiles) -> str:
    """``1,000 test images in 10 classes (0, 1, …, 9)``: what each side was scored on."""
    n_test = sum(int(scores["support"]) for scores in run.per_class.values())
    names = ", ".join(run.per_class)
    return escape_md(f"{n_test:,} test images in {len(run.per_class)} classes ({names})")


def render_markdown(result: Comparison) -> str:
    """``compare.md``: what changed (params), what moved (metrics, classes), the pictures.

    The PNGs sit next to it, so the links are bare file names.
    """
    old, new = result.old.label, result.new.label
    old_short, new_short = result.old.short, result.new.short
    lines = [f"# {escape_md(new)} vs {escape_md(old)}", ""]
    old_data, new_data = _data_line(result.old_run), _data_line(result.new_run)
    if old_data == new_data:
        lines += [f"Both runs: {new_data}.", ""] if new_data else []
    else:
        lines += [
            f"> **Warning:** the runs saw different data — {escape_md(old)}: {old_data}; "
            f"{escape_md(new)}: {new_data}. Their scores are not directly comparable.",
            "",
        ]
    lines += ["## Params that changed", ""]
    params = pd.DataFrame(params_rows(result.params), columns=["param", old_short, new_short])
    lines += [markdown_table(params, index=False) if len(params) else "None."]
    lines += ["", "## Metrics", ""]
    header = ["file", "metric", old_short, new_short, "change"]
    metrics = pd.DataFrame(metrics_rows(result.metrics), columns=header)
    lines += [
        markdown_table(metrics, index=False) if len(metrics) else "No metrics on either side."
    ]
    lines += ["", f"## Classes whose recall moved most (top {TOP_MOVERS})", ""]
    if result.movers.empty:
        lines += ["No class's recall changed."]
    else:
        movers = result.movers.set_index("class")
        shown = (
            movers[["old", "new"]]
            .map("{:.4f}".format)
            .assign(change=movers["delta"].map("{:+.4f}".format))
        )
        lines += [markdown_table(shown.set_axis([old_short, new_short, "change"], axis=1))]
    lines += [
        "",
        f"![per-class recall]({FIGURES['recall']})",
        "",
        "## Learning curves",
        "",
        f"![learning curves]({FIGURES['learning_curves']})",
        "",
        "## Confusion matrices (rows = actual, columns = predicted)",
        "",
        f"![confusion matrices]({FIGURES['confusion']})",
        "",
        f"## Confusion difference ({new_short} − {old_short}, cell by cell)",
        "",
    ]
    if result.diff is None:
        lines += ["The two runs have different classes; there is no cell-by-cell difference."]
    else:
        lines += [
            f"![confusion difference]({FIGURES['confusion_diff']})",
            "",
            "Blue = more test images in that cell, red = fewer. On the diagonal blue is good;",
            "off the diagonal red is good.",
            "",
            markdown_table(
                result.diff.map(lambda v: f"{v:+d}" if v else "0").rename_axis(
                    "actual \\ predicted"
                )
            ),
        ]
    return "\n".join([*lines, ""])


def build_figures(result: Comparison) -> dict[str, Figure]:
    """The report's figures, keyed like ``FIGURES`` (no difference heatmap across datasets)."""
    old, new = result.old.label, result.new.label
    old_run, new_run = result.old_run, result.new_run
    figures = {
        "learning_curves": learning_curves(old_run.history, new_run.history, old, new),
        "confusion": confusion_pair(old_run.confusion, new_run.confusion, old, new),
        "recall": recall_bars(old_run.per_class, new_run.per_class, old, new),
    }
    if result.diff is not None:
        figures["confusion_diff"] = confusion_diff_heatmap(result.diff, old, new)
    return figures


def write_report(result: Comparison, out: Path) -> Path:
    """Replace ``out`` with ``compare.md``, ``compare.json`` and the PNGs; return the .md.

    The whole folder is replaced, so it must be new, empty or an earlier comparison: a typo
    such as ``--out .`` or ``--out reports`` stops here instead of deleting that folder.
    """
    if out.is_dir() and any(out.iterdir()) and not (out / "compare.md").is_file():
        raise PipelineError(
            f"--out {out}: folder exists and is not an earlier comparison (no compare.md); "
            "it would be replaced: choose a new or empty folder"
        )
    figures = build_figures(result)
    with atomic_dir(out) as tmp:
        for name, fig in figures.items():
            save_figure(fig, tmp / FIGURES[name])
        write_json(result.as_json(), tmp / "compare.json")
        write_text(render_markdown(result), tmp / "compare.md")
    return out / "compare.md"


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_pipeline compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--rev", required=True, help="old side: git revision or DVC experiment name"
    )
    parser.add_argument(
        "--new", default=WORKSPACE, help="new side (default: the working tree as it is)"
    )
    parser.add_argument("--out", type=Path, default=Path("compare"), help="output folder")
    args = parser.parse_args(argv)
    result = compare(repo_root(Path.cwd()), args.rev, args.new)
    report = write_report(result, args.out)
    accuracy = result.metrics.get(EVAL, {}).get("accuracy", {})
    if "old" in accuracy and "new" in accuracy:
        print(
            f"accuracy {result.old.label} {accuracy['old']:.4f} -> "
            f"{result.new.label} {accuracy['new']:.4f}"
        )
    print(f"compare: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
