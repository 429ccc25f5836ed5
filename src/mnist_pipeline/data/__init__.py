"""Getting the raw IDX files (``sources``, the download stage) and turning them into
tensors and splits (``splits``, the preprocess stage; read by every later stage)."""
