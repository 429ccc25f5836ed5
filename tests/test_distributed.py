"""Multi-process training: the train stage under torchrun (2 CPU processes, gloo).

`train.processes: 2` makes the stage re-launch itself with torchrun; each rank trains on
its shard of every global minibatch and rank 0 writes the outputs. The result must match
single-process training on the same global batches.
"""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, run
from mnist_pipeline.learning.model_file import load_model

pytestmark = pytest.mark.slow


def run_stage(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = str(REPO / "stages" / f"{name}.py")
    return run([sys.executable, script, *args], cwd, src=REPO / "src", timeout=300)


@pytest.mark.parametrize("gradients", ["manual", "autograd"])
def test_two_processes_match_one(raw_dir: Path, tmp_path: Path, gradients: str) -> None:
    run_stage("preprocess", "--params", str(REPO / "params.yaml"), "--raw", str(raw_dir),
              "--out", "processed", cwd=tmp_path)  # fmt: skip
    outputs = {}
    for processes in (1, 2):
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["train"].update(
            epochs=2, lr=0.5, batch_size=15, processes=processes, gradients=gradients
        )  # 200 = 13 * 15 + 5: uneven shards and a short last batch
        params = tmp_path / f"params{processes}.yaml"
        params.write_text(yaml.safe_dump(raw))
        out = tmp_path / f"p{processes}"
        run_stage(
            "train", "--params", str(params), "--data", "processed",
            "--model", str(out / "model.safetensors"), "--history", str(out / "log.csv"),
            cwd=tmp_path,
        )  # fmt: skip
        outputs[processes] = out
    one, two = (pd.read_csv(outputs[p] / "log.csv") for p in (1, 2))
    assert list(two.columns) == list(one.columns)
    assert (two["test_accuracy"] - one["test_accuracy"]).abs().max() <= 0.01
    pd.testing.assert_series_equal(two["train_loss"], one["train_loss"], atol=1e-4)
    m1, m2 = (load_model(outputs[p] / "model.safetensors")[0] for p in (1, 2))
    for (name, a), b in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
    assert sorted(p.name for p in outputs[2].iterdir()) == sorted(
        p.name for p in outputs[1].iterdir()
    )
