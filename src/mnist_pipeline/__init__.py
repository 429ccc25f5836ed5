"""mnist_pipeline: the logic behind the DVC stages in ``stages/``.

The folders follow the DAG: ``core`` (every stage), ``data`` (download, preprocess),
``learning`` (train; evaluate uses its models), ``evaluation`` (evaluate), ``reporting``
(report) and ``tools`` (outside the DAG). Each stage in ``dvc.yaml`` depends on the folders
it imports, so editing code reruns the stages it affects.
"""
