"""Commands outside the DAG: ``validate`` (CI's checks) and the notebook's worked example.
No stage imports this folder."""
