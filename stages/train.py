"""DVC stage `train`: the ``train`` section's model, fitted on the processed tensors.

Writes the weights (safetensors, the architecture in its metadata), the per-epoch log and,
with ``--onnx``, the same model as ONNX checked against torch on the test set: all or none.
With ``--checkpoint`` the state after every epoch is kept there: a rerun after a kill resumes
after the last complete epoch and writes the same bytes."""

import argparse
import os
import sys
from pathlib import Path

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.io import outputs, write_bytes, write_text
from mnist_pipeline.core.params import load_section
from mnist_pipeline.data.splits import load_split
from mnist_pipeline.data.tensors import read_tensor_metadata
from mnist_pipeline.learning.checkpoints import Checkpoint, run_key
from mnist_pipeline.learning.distributed import as_rank, launch
from mnist_pipeline.learning.history import history_csv
from mnist_pipeline.learning.losses import Head
from mnist_pipeline.learning.model_file import check_onnx, save_model, to_onnx
from mnist_pipeline.learning.optim import is_scheduled
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="DVC stage train: fit the model")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True, help="preprocess stage output")
    parser.add_argument("--model", type=Path, required=True, help="weights file to write")
    # Not "--log": torchrun's parser would take it for an abbreviation of its --log-dir.
    parser.add_argument("--history", type=Path, required=True, help="per-epoch CSV to write")
    parser.add_argument("--onnx", type=Path, help="the model as ONNX, for serving")
    parser.add_argument("--checkpoint", type=Path, help="state to resume from after a kill")
    args = parser.parse_args(argv)

    params = load_section(args.params, "train", TrainParams)
    if params.processes > 1 and "WORLD_SIZE" not in os.environ:
        # torchrun runs this very script on every rank; they come back here with WORLD_SIZE.
        return launch(params.processes, params.rank_timeout, sys.argv)
    data = [args.data / "train.safetensors", args.data / "test.safetensors"]
    train_split, test_split = map(load_split, data)
    rank0 = os.environ.get("RANK", "0") == "0"  # a torchrun rank > 0 writes nothing
    key = run_key(params, data) if args.checkpoint else ""
    checkpoint = Checkpoint(args.checkpoint, key, rank0) if args.checkpoint else None
    result = train(params, train_split, test_split, checkpoint=checkpoint)
    if not rank0:
        return
    model, spec, classes = result.model, result.spec, train_split.classes
    head = Head(params.output, result.temperature, params.unsure_below, result.shift)  # both files
    if args.onnx:  # exported and checked first: a refused export writes nothing
        dataset = read_tensor_metadata(data[1]).get("dataset", "unknown")
        onnx = to_onnx(model, spec, head, classes, dataset)
        checked = check_onnx(onnx, model, head, test_split.images, args.onnx)
    log = history_csv(result.history, result.scored_on, is_scheduled(params), result.shipped)
    with outputs() as out:  # the model, the log and the ONNX file change together
        save_model(model, spec, out.file(args.model), params.loss, head, classes)
        write_text(log, out.file(args.history))
        if args.onnx:
            write_bytes(onnx, out.file(args.onnx))
    if args.onnx:
        print(f"train: {checked}")
    if checkpoint is not None:
        checkpoint.remove()
    print(result.summary())


if __name__ == "__main__":
    raise SystemExit(entry_point(as_rank(main))())
