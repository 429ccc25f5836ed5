"""The plumbing every stage uses: errors, atomic I/O and validated reading (``io``), the
entry-point wrapper (``cli``) and torch's runtime settings (``runtime``). Every stage in
``dvc.yaml`` depends on this folder."""
