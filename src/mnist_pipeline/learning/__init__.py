"""What the train stage runs: the ``train`` params, models and losses (registries), the
hand-derived backward pass, optimization, the training loop, checkpoints, torchrun ranks and
the model files (evaluate reads ``models``, ``model_file`` and ``losses``)."""
