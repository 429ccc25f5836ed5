"""Models, losses, the hand-derived backward pass, the training loop, data parallelism and
live tracking: what the train stage needs (evaluate uses ``models`` and ``losses``)."""
