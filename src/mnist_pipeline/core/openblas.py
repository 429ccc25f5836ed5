"""torch's float32 GEMMs on OpenBLAS's Haswell kernel, for ``train.kernels: avx2``.

MKL's fast code paths give other bits on AMD CPUs than on Intel ones. OpenBLAS, told which
kernel to run (``OPENBLAS_CORETYPE``), runs that same code on any CPU with its
instructions; its Haswell kernel needs AVX2 and FMA, both exact, so every such x86-64 CPU,
Intel or AMD, computes the same bits. It blocks a GEMM's inner dimension by sizes fixed per
kernel and runs here on one thread, so the bits depend on the shapes alone.

torch links MKL into ``libtorch_cpu.so`` and calls its Fortran ``sgemm_``/``sgemv_``
through the library's PLT, as it does for every float ``mm``, ``addmm``, ``nn.Linear`` and
im2col convolution (with oneDNN off). ``route_gemms`` points those two PLT slots at
OpenBLAS's functions, what ``LD_PRELOAD`` of a BLAS would do, for this process, then checks
that a product torch computes is OpenBLAS's, bit for bit. Whatever else calls MKL keeps its
``COMPATIBLE`` branch.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
from pathlib import Path

from mnist_pipeline.core.errors import PipelineError

CORE = "Haswell"
ROUTED = ("sgemm_", "sgemv_")  # torch's PLT imports, pointed at OpenBLAS's scipy_<name>


@functools.cache
def load() -> ctypes.CDLL:
    """scipy-openblas32's library at the Haswell kernel, on one thread."""
    before = os.environ.get("OPENBLAS_CORETYPE")
    os.environ["OPENBLAS_CORETYPE"] = CORE
    try:  # read when the library loads, which importing its package does
        import scipy_openblas32

        blas = ctypes.CDLL(str(Path(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so")))
    finally:
        os.environ.pop("OPENBLAS_CORETYPE")
        if before is not None:
            os.environ["OPENBLAS_CORETYPE"] = before
    blas.scipy_openblas_get_corename.restype = ctypes.c_char_p
    core = blas.scipy_openblas_get_corename().decode()
    if core.lower() != CORE.lower():
        raise PipelineError(
            f"train.kernels=avx2: OpenBLAS loaded with its {core} kernel, not {CORE}, before "
            "the pipeline could choose; use train.kernels=portable"
        )
    blas.scipy_openblas_set_num_threads(1)
    return blas


# ELF64 tables as numpy records: .rela.plt's relocations, .dynsym's symbols.
RELA = [("offset", "<u8"), ("info", "<u8"), ("addend", "<i8")]
SYM = [("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"),
       ("size", "<u8")]  # fmt: skip


def plt_slots(library: Path) -> dict[str, tuple[int, int]]:
    """``library``'s PLT slots (GOT offset) and definitions (symbol value) for ``ROUTED``.
    pyelftools finds the tables; numpy reads them whole (per entry, pyelftools takes
    seconds on torch's library)."""
    import numpy as np
    from elftools.elf.elffile import ELFFile

    found: dict[str, tuple[int, int]] = {}
    with library.open("rb") as file:
        elf = ELFFile(file)
        plt = elf.get_section_by_name(".rela.plt")
        if plt is None:
            return found
        dynsym = elf.get_section(plt["sh_link"])
        names = elf.get_section(dynsym["sh_link"]).data()
        relocations = np.frombuffer(plt.data(), dtype=RELA)
        symbols = np.frombuffer(dynsym.data(), dtype=SYM)
    for name in ROUTED:  # a name may be the tail of a longer one in the string table
        at = [m.start() for m in re.finditer(re.escape(name.encode() + b"\0"), names)]
        index = np.flatnonzero(np.isin(symbols["name"], at))
        slot = np.flatnonzero(relocations["info"] >> 32 == index[0]) if len(index) == 1 else []
        if len(slot) == 1 and symbols["value"][index[0]]:
            found[name] = (int(relocations["offset"][slot[0]]), int(symbols["value"][index[0]]))
    return found


@functools.cache  # once per process; a refusal raises and is not kept
def route_gemms() -> None:
    """Point torch's ``sgemm_`` and ``sgemv_`` calls at OpenBLAS's Haswell kernel in this
    process; refuse, naming why, when that cannot be done or checked."""
    import torch

    blas = load()
    library = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    slots = plt_slots(library)
    missing = " / ".join(name for name in ROUTED if name not in slots)
    if missing:
        raise PipelineError(
            f"train.kernels=avx2: {library} calls no {missing} through its PLT, so its GEMMs "
            "cannot run on OpenBLAS; use train.kernels=portable"
        )
    torch_lib = ctypes.CDLL(str(library))
    for name, (offset, value) in slots.items():
        base = ctypes.cast(getattr(torch_lib, name), ctypes.c_void_p).value - value  # type: ignore[operator]
        target = ctypes.cast(getattr(blas, f"scipy_{name}"), ctypes.c_void_p).value
        ctypes.c_void_p.from_address(base + offset).value = target
    check(blas)


def check(blas: ctypes.CDLL) -> None:
    """torch's product of two fixed matrices is OpenBLAS's own, bit for bit."""
    import torch

    a = torch.arange(96 * 300, dtype=torch.float32).reshape(96, 300).sin()
    b = torch.arange(300 * 40, dtype=torch.float32).reshape(300, 40).cos()
    ours = torch.zeros(96, 40)
    m, n, k = (ctypes.c_int(v) for v in (96, 40, 300))
    one, zero, no = ctypes.c_float(1.0), ctypes.c_float(0.0), ctypes.c_char(b"N")
    # Column-major C = A @ B with A, B, C read as their transposes: C^T = B^T @ A^T.
    blas.scipy_sgemm_(
        ctypes.byref(no), ctypes.byref(no), ctypes.byref(n), ctypes.byref(m), ctypes.byref(k),
        ctypes.byref(one), ctypes.c_void_p(b.data_ptr()), ctypes.byref(n),
        ctypes.c_void_p(a.data_ptr()), ctypes.byref(k), ctypes.byref(zero),
        ctypes.c_void_p(ours.data_ptr()), ctypes.byref(n),
    )  # fmt: skip
    if not torch.equal(a @ b, ours):
        raise PipelineError(
            "train.kernels=avx2: torch's GEMMs still do not run on OpenBLAS after routing; "
            "use train.kernels=portable"
        )
