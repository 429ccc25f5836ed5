"""What pinned kernels cost: s/epoch of the seed config, the mlp and the cnn presets under
``train.kernels: portable``, ``avx2`` and ``native``, side by side on Fashion-MNIST 60k/10k.

    .venv/bin/python benchmarks/bench_kernels.py [--epochs 3] [--models seed,mlp,cnn]
        [--subsample N]

torch fixes its kernels when it first computes, so every (model, kernels) pair trains in a
fresh process (``--one MODEL KERNELS`` is that child); the kernels alternate within each
model so that drifting load hits every mode alike. Each preset runs with its own
``train.threads``. ``--subsample N`` trains on the first N images (for quick looks; the
README's table uses all 60k). Prints a markdown table and writes it to
``benchmarks/results/kernels.md``; never asserts timings.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import DATASETS, REPO, markdown, write_results
from mnist_pipeline.core.runtime import KERNELS
from mnist_pipeline.tools.presets import load_presets


def preset_settings(model: str) -> dict[str, Any]:
    """A preset's ``train`` settings from presets.yaml (lists as tuples); {} for the seed."""
    settings = {} if model == "seed" else load_presets(REPO / "presets.yaml")[model]
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}


def fashion_splits(subsample: int = 0) -> tuple[Any, Any]:
    """Fashion-MNIST's train split (its first ``subsample`` images; 0: all) and test split."""
    from mnist_pipeline.data.sources import IDX_FILES, fetch
    from mnist_pipeline.data.splits import read_raw_split

    with tempfile.TemporaryDirectory() as tmp:
        manifest = fetch(DATASETS["fashion-mnist"], Path(tmp))
        train_split, test_split = (
            read_raw_split(Path(tmp), images, labels, manifest)
            for images, labels in IDX_FILES.values()
        )
    if subsample:
        head = {"images": train_split.images[:subsample], "labels": train_split.labels[:subsample]}
        train_split = dataclasses.replace(train_split, **head)
    return train_split, test_split


# Self time of an op (its own, not its callees') falls in the first category whose pattern it
# matches: the work whose kernels the pins choose and the bytes depend on.
CATEGORIES = {
    "GEMMs": r"aten::(add)?(mm|bmm|mv)_?$",
    "convolutions": r"aten::.*conv(olution|\d)",
    "other ops": r".",
}


def op_seconds(prof: Any) -> dict[str, float]:
    """The profiled self CPU time per category of ``CATEGORIES``, in seconds."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for event in prof.key_averages():
        name = next(c for c, pattern in CATEGORIES.items() if re.match(pattern, event.key))
        totals[name] += event.self_cpu_time_total / 1e6
    return totals


def one(
    model: str, kernels: str, epochs: int, subsample: int, ops: bool = False
) -> dict[str, object]:
    """Train one preset in this process (the child's job); its per-epoch seconds, and with
    ``ops`` one more epoch's op time per category under the profiler."""
    from mnist_pipeline.core.runtime import configure_torch

    settings = preset_settings(model)
    configure_torch(settings.get("threads", 1), kernels)  # before any tensor op
    from mnist_pipeline.learning.params import TrainParams
    from mnist_pipeline.learning.training import train

    params = TrainParams(**{**settings, "epochs": epochs, "device": "cpu", "kernels": kernels})
    train_split, test_split = fashion_splits(subsample)
    stamps: list[tuple[float, float]] = []
    start = (time.perf_counter(), time.process_time())
    result = train(
        params,
        train_split,
        test_split,
        on_epoch=lambda _: stamps.append((time.perf_counter(), time.process_time())),
    )
    wall, cpu = ([b[i] - a[i] for a, b in itertools.pairwise([start, *stamps])] for i in (0, 1))
    row = {
        "seconds": wall,
        "cpu": cpu,
        "accuracy": result.history[-1].accuracy,
        "threads": params.threads,
    }
    if ops:
        from torch.profiler import profile

        with profile() as prof:
            train(params.model_copy(update={"epochs": 1}), train_split, test_split)
        row["ops"] = op_seconds(prof)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--subsample", type=int, default=0, help="train images (0: all)")
    parser.add_argument("--models", default="seed,mlp,cnn")
    parser.add_argument("--ops", action="store_true", help="add the profiled op breakdown")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "KERNELS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.epochs, args.subsample, args.ops)))
        return
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    rows = {}
    for model in args.models.split(","):
        for kernels in KERNELS:
            print(f"{model}, {kernels} ...", flush=True)
            out = subprocess.run(
                [sys.executable, __file__, "--epochs", str(args.epochs), "--subsample",
                 str(args.subsample), "--one", model, kernels, *["--ops"] * args.ops],
                env=env, check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            rows[model, kernels] = json.loads(out.splitlines()[-1])
    cells = []
    for model in args.models.split(","):
        mean = {k: sum(rows[model, k]["seconds"]) / args.epochs for k in KERNELS}  # type: ignore[arg-type]
        cpu = {k: sum(rows[model, k]["cpu"]) / args.epochs for k in KERNELS}  # type: ignore[arg-type]
        cells.append(
            (
                model,
                rows[model, "native"]["threads"],
                *(f"{mean[k]:.3f}" for k in KERNELS),
                *(f"{mean[k] / mean['native']:.2f}x" for k in KERNELS if k != "native"),
                *(f"{cpu[k] / cpu['native']:.2f}x" for k in KERNELS if k != "native"),
                " / ".join(f"{rows[model, k]['accuracy']:.4f}" for k in KERNELS),
            )
        )
    size = f"first {args.subsample:,} of 60k" if args.subsample else "60k"
    title = (
        f"## Pinned vs native kernels: Fashion-MNIST {size}/10k, {args.epochs} epochs, "
        f"{cpu_name()}, {os.cpu_count()} cores "
        f"(load avg {os.getloadavg()[0]:.2f} at the end)"
    )
    columns = [
        "model", "threads", *(f"{k} s/epoch" for k in KERNELS),
        *(f"{k} / native" for k in KERNELS if k != "native"),
        *(f"{k} / native CPU-s" for k in KERNELS if k != "native"),
        f"accuracy {' / '.join(KERNELS)}",
    ]  # fmt: skip
    text = f"{title}\n\n{markdown(cells, columns)}\n"
    if args.ops:
        text += f"\n{ops_table(rows, args.models.split(','))}\n"
    write_results("kernels", text)


def ops_table(rows: dict[tuple[str, str], dict[str, Any]], models: list[str]) -> str:
    """Profiled s/epoch per op category and mode, and each pinned mode's excess over native."""
    cells = []
    for model in models:
        for name in CATEGORIES:
            secs = {k: rows[model, k]["ops"][name] for k in KERNELS}
            excess = (f"{secs[k] - secs['native']:+.3f}" for k in KERNELS if k != "native")
            cells.append((model, name, *(f"{secs[k]:.3f}" for k in KERNELS), *excess))
    columns = [
        "model", "ops", *(f"{k} s/epoch" for k in KERNELS),
        *(f"{k} − native" for k in KERNELS if k != "native"),
    ]  # fmt: skip
    title = "### Where the time goes: one more epoch per cell under torch.profiler (self CPU time)"
    return f"{title}\n\n{markdown(cells, columns)}"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (the machine the table was measured on)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    main()
