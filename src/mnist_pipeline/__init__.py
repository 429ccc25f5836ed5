"""mnist_pipeline: the logic behind the DVC stages in ``stages/``.

Each module has one job: ``params`` (validated settings), ``io`` (every file format),
``sources`` (getting the raw IDX files), ``data`` (tensors and batches), ``models``,
``losses``, ``training``, ``evaluation`` and ``report``. The stages are thin ``main()``
functions over these; run them through ``dvc repro``.
"""

__version__ = "0.1.0"
