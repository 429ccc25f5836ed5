"""Getting the raw IDX files (the download stage) and turning them into splits (preprocess)."""
