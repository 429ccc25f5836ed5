"""The report stage (``report``), the run summary of ``make run`` and ``make compare``."""
