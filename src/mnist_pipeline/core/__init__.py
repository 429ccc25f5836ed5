"""The plumbing every stage uses: errors, atomic I/O (``io``), the typed files stages hand
each other (``schemas``), the entry-point wrapper (``cli``) and torch's runtime settings.
Every stage in ``dvc.yaml`` depends on this folder."""
