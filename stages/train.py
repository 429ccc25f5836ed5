"""DVC stage `train`: the notebook's model and SGD loop on the processed tensors.

    python stages/train.py --params params.yaml --data data/processed \
        --model models/model.safetensors --history metrics/train_log.csv \
        --onnx models/model.onnx --checkpoint .dvc/tmp/train-checkpoint.pt

Reads the ``train`` section. Writes the weights (safetensors, with the architecture in
its metadata), the same model as ONNX (``--onnx``: checked against torch on the whole test
set before anything is written; ``learning.export``) and the per-epoch log, together,
when training ends. With ``--checkpoint``
the run's state is kept there after every epoch (``learning.checkpoints``): a rerun after
a kill resumes after the last complete epoch and writes the same bytes; a kill changes no
output.
"""

import argparse
import os
import sys
from pathlib import Path

from mnist_pipeline.core.cli import run_stage
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import outputs, write_bytes, write_csv
from mnist_pipeline.core.params import load_section
from mnist_pipeline.data.splits import load_split
from mnist_pipeline.data.tensors import read_tensor_metadata
from mnist_pipeline.learning.checkpoints import Checkpoint, run_key
from mnist_pipeline.learning.export import check_onnx, to_onnx
from mnist_pipeline.learning.history import history_frame
from mnist_pipeline.learning.launch import as_rank, launch
from mnist_pipeline.learning.model_file import save_model
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.schedules import is_scheduled
from mnist_pipeline.learning.training import train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="DVC stage train: fit the model on the processed tensors"
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True, help="preprocess stage output")
    parser.add_argument("--model", type=Path, required=True, help="weights file to write")
    # Not "--log": torchrun's parser would take it for an abbreviation of its --log-dir.
    parser.add_argument("--history", type=Path, required=True, help="per-epoch CSV to write")
    parser.add_argument("--onnx", type=Path, help="the model as ONNX, for serving")
    parser.add_argument(
        "--checkpoint", type=Path, help="working state to resume from after a kill (untracked)"
    )
    args = parser.parse_args(argv)

    params = load_section(args.params, "train", TrainParams)
    if params.processes > 1 and "WORLD_SIZE" not in os.environ:
        # torchrun runs this very script on every rank; they come back here with WORLD_SIZE.
        return launch(params.processes, params.rank_timeout, sys.argv)
    train_split = load_split(args.data / "train.safetensors")
    test_split = load_split(args.data / "test.safetensors")
    rank0 = os.environ.get("RANK", "0") == "0"  # a torchrun rank > 0 writes nothing
    checkpoint = None
    if args.checkpoint is not None:
        data = [args.data / "train.safetensors", args.data / "test.safetensors"]
        checkpoint = Checkpoint(args.checkpoint, run_key(params, data), owner=rank0)
    if not rank0:
        train(params, train_split, test_split, checkpoint=checkpoint)
        return
    try:
        result = train(params, train_split, test_split, checkpoint=checkpoint)
    except (MemoryError, RuntimeError) as err:  # torch's allocators raise RuntimeError
        if not isinstance(err, MemoryError) and "alloc" not in str(err):
            raise
        reason = (str(err).strip().splitlines() or ["MemoryError"])[0]
        raise PipelineError(
            f"train: out of memory ({reason[:120]}); lower train.batch_size or the model's "
            "size (train.hidden, train.channels), or free memory"
        ) from err

    temperature = result.temperature
    calibration = (temperature, params.unsure_below)  # what both model files carry
    history = history_frame(result.history, result.scored_on, is_scheduled(params), result.shipped)
    if args.onnx:  # exported and checked first: a refused export writes nothing
        dataset = read_tensor_metadata(args.data / "test.safetensors").get("dataset", "unknown")
        onnx_model = to_onnx(
            result.model, result.spec, params.output, train_split.classes, dataset, *calibration
        )
        diff, count = check_onnx(
            onnx_model, result.model, params.output, test_split.images, str(args.onnx), temperature
        )
    with outputs() as out:  # the model, the log and the ONNX file change together
        save_model(
            result.model,
            result.spec,
            out.file(args.model),
            params.loss,
            params.output,
            train_split.classes,
            *calibration,
        )
        write_csv(history, out.file(args.history))
        if args.onnx:
            write_bytes(onnx_model, out.file(args.onnx))
    if args.onnx:
        print(
            f"train: {args.onnx} matches torch on {count} test images "
            f"(max probability difference {diff:.1e}, same class for every image)"
        )
    if checkpoint is not None:
        checkpoint.remove()
    shipped = result.history[result.shipped - 1]
    trained = len(result.seconds_per_epoch)
    seconds = sum(result.seconds_per_epoch) / max(trained, 1)
    print(
        f"train: {result.stop_reason}; trained {trained} epoch(s) in this run "
        f"(from epoch {result.first_epoch}, {seconds:.2f} s/epoch); shipped epoch "
        f"{result.shipped} of {len(result.history)}, {result.scored_on} accuracy "
        f"{shipped.accuracy:.4f}"
        + (f"; temperature {temperature} (fitted on the val slice)" if temperature != 1.0 else "")
    )


if __name__ == "__main__":
    raise SystemExit(run_stage(as_rank(main)))
