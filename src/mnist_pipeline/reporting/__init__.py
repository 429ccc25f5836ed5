"""The report stage (``report``, its charts in ``figures``) and ``make run``'s summary."""
