"""What every stage uses: errors, file formats (``io``), validated params, the entry-point
wrapper (``cli``) and torch's runtime settings. Every stage in ``dvc.yaml`` depends on this
folder."""
