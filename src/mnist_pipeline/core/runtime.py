"""Where and how torch runs: thread count, determinism, device.

Float sums are only bit-repeatable at a fixed thread count, so every stage that computes
with torch calls ``configure_torch(train.threads)`` first.
"""

import torch

from mnist_pipeline.core.errors import PipelineError


def configure_torch(threads: int) -> None:
    """Fix the thread count: float sums are only bit-repeatable at a fixed thread count."""
    torch.set_num_threads(threads)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError(
            "train.device=cuda but torch sees no CUDA GPU here; use train.device=auto or cpu"
        )
    return torch.device(name)
