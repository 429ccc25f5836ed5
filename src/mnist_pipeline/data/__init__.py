"""Getting the raw IDX files (``sources``: the source and dataset registries, the download
stage; ``mirrors``: a directory or URL read as streams; ``idx``: the file format) and turning
them into splits (``splits``, the preprocess stage) in safetensors files (``tensors``)."""
