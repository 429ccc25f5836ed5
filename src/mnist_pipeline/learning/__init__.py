"""What the train stage runs; evaluate reads ``models``, ``model_file`` and ``losses``."""
