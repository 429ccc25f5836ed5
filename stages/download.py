"""DVC stage `download`: the dataset's four IDX files and a manifest (``data.sources``).

python stages/download.py --params params.yaml --out data/raw
"""

import argparse
from pathlib import Path

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.io import atomic_dir, write_json
from mnist_pipeline.core.params import load_section
from mnist_pipeline.data.params import DataParams
from mnist_pipeline.data.sources import Manifest, fetch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the dataset's four IDX files and a manifest")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, required=True, help="directory for the IDX files")
    args = parser.parse_args(argv)

    params = load_section(args.params, "data", DataParams)
    with atomic_dir(args.out) as tmp:
        manifest = Manifest(**fetch(params, tmp))  # what readers will expect
        write_json(manifest.model_dump(), tmp / "manifest.json")
    print(f"download: {manifest.dataset} from {manifest.source} ({manifest.counts}) -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(entry_point(main)())
