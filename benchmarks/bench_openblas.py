"""What a cross-vendor GEMM would buy: the seed config's and the mlp preset's s/epoch with
ATen's ``avx2`` kernels and every torch GEMM (``aten::mm``, ``aten::addmm``) run by
numpy's OpenBLAS forced to its Haswell kernel (``OPENBLAS_CORETYPE=Haswell``, one
thread), side by side with ``native``; and, with ``--md5 N``, the md5 of the weights after
one epoch on the first N Fashion-MNIST images, to compare across CPUs.

    .venv/bin/python benchmarks/bench_openblas.py [--epochs 3] [--models seed,mlp]
    .venv/bin/python benchmarks/bench_openblas.py --md5 1024 [--models mlp]
    qemu-x86_64 -cpu Haswell .venv/bin/python benchmarks/bench_openblas.py --md5 1024

OpenBLAS runs the same Haswell (AVX2 + FMA) code on any CPU with those instructions, Intel
or AMD, where MKL's fast branches are Intel-only; docs/kernels.md has the numbers. A probe,
not a pipeline mode: convolutions still go through MKL, so the cnn is not covered. Prints
a markdown table and writes it to ``benchmarks/results/openblas.md``; never asserts
timings.
"""

from __future__ import annotations

import os

# OpenBLAS picks its kernel and thread count when numpy loads it: before any import.
os.environ.update(OPENBLAS_CORETYPE="Haswell", OPENBLAS_NUM_THREADS="1")

import argparse
import hashlib
import json
import subprocess
import sys
import warnings

import numpy as np

from bench_kernels import cpu_name, fashion_splits, one, preset_settings
from common import REPO, markdown, write_results

MODES = {"openblas": "avx2", "native": "native"}  # mode -> train.kernels


def route_gemms_to_openblas() -> None:
    """Replace torch's CPU ``mm`` and ``addmm`` (what ``nn.Linear``, ``@`` and their
    gradients run) with numpy's OpenBLAS."""
    import torch

    def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.matmul(a.detach().numpy(), b.detach().numpy()))

    def addmm(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta: float = 1,
              alpha: float = 1) -> torch.Tensor:  # fmt: skip
        product = np.matmul(a.detach().numpy(), b.detach().numpy())
        return torch.from_numpy(alpha * product + beta * c.detach().numpy())

    library = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():  # "overriding a previously registered kernel": meant
        warnings.simplefilter("ignore")
        library.impl("mm", mm, "CPU")
        library.impl("addmm", addmm, "CPU")
    route_gemms_to_openblas.library = library  # type: ignore[attr-defined]  # keep it alive


def weights_md5(model: str, images: int) -> str:
    """md5 of the weights after one epoch on the first ``images`` training images."""
    from mnist_pipeline.core.runtime import configure_torch

    settings = preset_settings(model)
    configure_torch(1, "avx2")
    from mnist_pipeline.learning.config import TrainParams
    from mnist_pipeline.learning.training import train

    params = TrainParams(**{**settings, "epochs": 1, "threads": 1, "kernels": "avx2"})
    state = train(params, *fashion_splits(images)).model.state_dict().values()
    return hashlib.md5(b"".join(t.numpy().tobytes() for t in state)).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", default="seed,mlp")
    parser.add_argument("--md5", type=int, metavar="N", help="print weight md5s, no timings")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.md5:
        route_gemms_to_openblas()
        for model in args.models.split(","):
            print(f"{weights_md5(model, args.md5)}  {model}, {args.md5} images, {cpu_name()}")
        return
    if args.one:
        model, mode = args.one
        if mode == "openblas":
            route_gemms_to_openblas()
        print(json.dumps(one(model, MODES[mode], args.epochs, 0)))
        return
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    rows = []
    for model in args.models.split(","):
        seconds = {}
        for mode in MODES:
            print(f"{model}, {mode} ...", flush=True)
            out = subprocess.run(
                [sys.executable, __file__, "--epochs", str(args.epochs), "--one", model, mode],
                env=env, check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            seconds[mode] = sum(json.loads(out.splitlines()[-1])["seconds"]) / args.epochs
        ratio = seconds["openblas"] / seconds["native"]
        rows.append(
            (model, f"{seconds['openblas']:.3f}", f"{seconds['native']:.3f}", f"{ratio:.2f}x")
        )
    columns = ["model", "avx2 + OpenBLAS Haswell s/epoch", "native s/epoch", "ratio"]
    title = f"## avx2 + OpenBLAS vs native: Fashion-MNIST 60k, {args.epochs} epochs, {cpu_name()}"
    write_results("openblas", f"{title}\n\n{markdown(rows, columns)}\n")


if __name__ == "__main__":
    main()
