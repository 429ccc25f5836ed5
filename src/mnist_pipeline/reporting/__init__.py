"""The report stage (``report``, charts in ``figures``) and ``make run``'s summary."""
