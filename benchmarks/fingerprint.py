"""Which computation writes other bytes on another CPU: an md5 per building block of the
seed config and the presets (each GEMM shape they run, convolutions, batch norm, the
softmax/cross-entropy gradients, Adam's steps, Python's float math), under one
``train.kernels`` mode.

    .venv/bin/python benchmarks/fingerprint.py [--kernels portable] [--threads 1]

Run it on two machines and ``diff`` the outputs: the first differing md5 line names the op
to look at (docs/kernels.md keeps one machine's output). qemu-user stands in for another
vendor's CPU: ``qemu-x86_64 -cpu Haswell .venv/bin/python benchmarks/fingerprint.py``.
Inputs are whole numbers over 997, drawn with ``torch.randint`` (integer draws, the same
on every CPU), so any difference comes from the op itself, not from its input.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import struct
from collections.abc import Callable

from bench_kernels import cpu_name
from mnist_pipeline.core.runtime import KERNELS, configure_torch
from mnist_pipeline.learning.optim import OPTIMIZERS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", choices=KERNELS, default="portable")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configure_torch(args.threads, args.kernels)  # before any tensor op
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)

    def data(*shape: int) -> torch.Tensor:
        return torch.randint(-997, 998, shape, generator=generator).float() / 997

    def linear(rows: int, fan_in: int, fan_out: int) -> torch.Tensor:
        return F.linear(data(rows, fan_in), data(fan_out, fan_in), data(fan_out))

    def adam_steps(steps: int) -> torch.Tensor:
        weight = torch.nn.Parameter(data(256, 784))
        grads = [data(256, 784) / 100 for _ in range(3)]
        optimizer = OPTIMIZERS["adam"]([weight], 1e-3, 0.0, 0.0)  # the pipeline's Adam
        for step in range(steps):
            weight.grad = grads[step % 3]
            optimizer.step()
        return weight.detach()

    def gradient(op: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
        leaves = [x.clone().requires_grad_() for x in inputs]
        op(*leaves).sum().backward()
        return torch.cat([leaf.grad.flatten() for leaf in leaves])

    def batch_norm(x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, None, None, training=True)

    images, logits, labels = data(128, 1, 28, 28), data(128, 10) * 5, torch.arange(128) % 10
    feature_maps, hidden = data(128, 16, 14, 14), data(128, 256)
    checks: dict[str, Callable[[], torch.Tensor | bytes]] = {
        "gemm seed [16,785]@[785,10]": lambda: data(16, 785) @ data(785, 10),
        "gemm seed grad [10,16]@[16,785]": lambda: data(10, 16) @ data(16, 785),
        "addmm linear [64,784]@[784,10]+b": lambda: linear(64, 784, 10),
        "gemm linear grad [10,64]@[64,784]": lambda: data(64, 10).T @ data(64, 784),
        "addmm mlp [128,784]@[784,256]+b": lambda: linear(128, 784, 256),
        "gemm mlp grad [256,128]@[128,784]": lambda: data(128, 256).T @ data(128, 784),
        "gemm mlp delta [128,10]@[10,256]": lambda: data(128, 10) @ data(10, 256),
        "conv2d 1->16 3x3": lambda: F.conv2d(images, data(16, 1, 3, 3), data(16), padding=1),
        "conv2d 16->32 3x3": lambda: F.conv2d(feature_maps, data(32, 16, 3, 3), padding=1),
        "conv2d 16->32 3x3 grad": lambda: gradient(
            lambda x, w: F.conv2d(x, w, padding=1), feature_maps, data(32, 16, 3, 3)
        ),
        "batch_norm train": lambda: batch_norm(feature_maps),
        "batch_norm grad": lambda: gradient(batch_norm, feature_maps),
        "max_pool2d + relu": lambda: F.relu(F.max_pool2d(feature_maps, 2)),
        "softmax": lambda: logits.softmax(1),
        "sigmoid": lambda: hidden.sigmoid(),
        "cross_entropy grad": lambda: gradient(lambda z: F.cross_entropy(z, labels), logits),
        "sum over rows": lambda: hidden.sum(0),
        "adam 1 step": lambda: adam_steps(1),
        "adam 100 steps": lambda: adam_steps(100),
        "python 0.999**k, k<2000": lambda: struct.pack("2000d", *(0.999**k for k in range(2000))),
        "python cos schedule": lambda: struct.pack(
            "2000d", *(0.5 * (1 + math.cos(math.pi * k / 2000)) for k in range(2000))
        ),
    }
    print(f"# {cpu_name()}, train.kernels={args.kernels}, threads={args.threads}")
    for name, check in checks.items():
        value = check()
        raw = value if isinstance(value, bytes) else value.contiguous().numpy().tobytes()
        print(f"{hashlib.md5(raw).hexdigest()}  {name}")


if __name__ == "__main__":
    main()
