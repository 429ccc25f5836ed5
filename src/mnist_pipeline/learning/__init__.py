"""The params schema (``config``, derived from the registries; every stage), models,
losses and optimizers (registries), the hand-derived backward pass, the training loop,
data parallelism and live tracking: what the train stage needs (evaluate uses ``models``,
``model_file`` and ``losses``)."""
