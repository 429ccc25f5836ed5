"""DVC stage `preprocess`: IDX files -> float32 [N, 784] in [0, 1] + int64 labels.

    python stages/preprocess.py --params params.yaml --raw data/raw --out data/processed

Writes ``train.safetensors`` and ``test.safetensors`` with the dataset, source and class names
as metadata, and the download's ``manifest.json`` beside them, so later stages learn where the
data came from through the one ``data/processed`` dependency.
"""

import argparse
from pathlib import Path

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.io import atomic_dir, write_json
from mnist_pipeline.core.params import load_section
from mnist_pipeline.data.params import DataParams
from mnist_pipeline.data.sources import IDX_FILES, read_manifest
from mnist_pipeline.data.splits import check_trainable, read_raw_split, save_split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="IDX files -> float32 [N, 784] + int64 labels")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--raw", type=Path, required=True, help="download stage output")
    parser.add_argument("--out", type=Path, required=True, help="directory for the tensors")
    args = parser.parse_args(argv)

    load_section(args.params, "data", DataParams)  # validated before any work
    manifest = read_manifest(args.raw / "manifest.json").model_dump()
    splits = {name: read_raw_split(args.raw, *files, manifest) for name, files in IDX_FILES.items()}
    check_trainable(splits["train"])
    provenance = {key: manifest[key] for key in ("dataset", "source")}
    with atomic_dir(args.out) as tmp:
        for name, split in splits.items():
            save_split(split, tmp / f"{name}.safetensors", provenance)
        write_json(manifest, tmp / "manifest.json")
    print(f"preprocess: {', '.join(f'{n} {len(s)}' for n, s in splits.items())} -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(entry_point(main)())
