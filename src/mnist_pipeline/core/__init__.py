"""The plumbing every stage uses (every stage in ``dvc.yaml`` depends on this folder)."""
