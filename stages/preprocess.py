"""DVC stage `preprocess`: IDX files -> float32 [N, 784] in [0, 1] + int64 labels.

    python stages/preprocess.py --raw data/raw --out data/processed

Writes ``train.safetensors`` and ``test.safetensors`` (no pickle anywhere), each with the
dataset, source and class names as metadata, and the download's ``manifest.json`` beside
them, so later stages learn where the data came from through the one ``data/processed``
dependency.
"""

import argparse
import logging
from pathlib import Path

from mnist_pipeline.core.cli import run_stage
from mnist_pipeline.core.io import atomic_dir, write_json
from mnist_pipeline.core.params import load_section
from mnist_pipeline.data.params import DataParams
from mnist_pipeline.data.sources import IDX_FILES, read_manifest
from mnist_pipeline.data.splits import degenerate_data, read_raw_split, save_split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="IDX files -> float32 [N, 784] in [0, 1] + int64 labels"
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--raw", type=Path, required=True, help="download stage output")
    parser.add_argument("--out", type=Path, required=True, help="directory for the tensors")
    args = parser.parse_args(argv)

    load_section(args.params, "data", DataParams)  # validated before any work
    manifest = read_manifest(args.raw / "manifest.json").model_dump()
    splits = {
        name: read_raw_split(args.raw, images, labels, manifest)
        for name, (images, labels) in IDX_FILES.items()
    }
    for warning in degenerate_data(splits["train"], splits["test"]):
        logging.getLogger("preprocess").warning(warning)
    owns = (*(f"{name}.safetensors" for name in IDX_FILES), "manifest.json")
    with atomic_dir(args.out, owns) as tmp:
        for name, split in splits.items():
            provenance = {key: manifest[key] for key in ("dataset", "source")}
            save_split(split, tmp / f"{name}.safetensors", provenance)
        write_json(manifest, tmp / "manifest.json")
    shapes = ", ".join(f"{n} {list(s.images.shape)}" for n, s in splits.items())
    print(f"preprocess: {shapes} -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
