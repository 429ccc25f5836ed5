"""Getting the raw IDX files (``sources``: the source and dataset registries, the download
stage; ``idx``: the file format) and turning them into tensors and splits (``splits``, the
preprocess stage; ``tensors``: the safetensors files every later stage reads)."""
