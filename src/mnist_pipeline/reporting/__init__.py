"""The report stage (``report``, its charts in ``figures``)."""
