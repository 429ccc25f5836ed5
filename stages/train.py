"""DVC stage `train`: the notebook's model and SGD loop on the processed tensors.

    python stages/train.py --params params.yaml --data data/processed \
        --model models/model.safetensors --log metrics/train_log.csv

Reads the ``train`` section. Writes the weights (safetensors, with the architecture in
its metadata) and the per-epoch log that ``dvc plots`` draws.
"""

import argparse
from pathlib import Path

from mnist_pipeline.cli import run_stage
from mnist_pipeline.data import load_split
from mnist_pipeline.io import write_csv
from mnist_pipeline.models import save_model
from mnist_pipeline.params import load_params
from mnist_pipeline.training import history_frame, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True, help="preprocess stage output")
    parser.add_argument("--model", type=Path, required=True, help="weights file to write")
    parser.add_argument("--log", type=Path, required=True, help="per-epoch CSV to write")
    args = parser.parse_args()

    params = load_params(args.params).train
    train_split = load_split(args.data / "train.safetensors")
    test_split = load_split(args.data / "test.safetensors")
    result = train(params, train_split, test_split)

    save_model(result.model, result.spec, args.model, params.loss, params.output)
    write_csv(history_frame(result), args.log)
    last = result.history[-1]
    seconds = sum(result.seconds_per_epoch) / len(result.seconds_per_epoch)
    print(
        f"train: {params.epochs} epochs, final {result.scored_on} accuracy "
        f"{last.accuracy:.4f} ({seconds:.2f} s/epoch)"
    )


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
