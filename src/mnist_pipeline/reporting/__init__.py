"""The report stage (``report``, its charts in ``figures``) and the run summary of
``make run``."""
