"""Commands outside the DAG: ``validate`` (CI's checks), ``compare`` (two runs), ``predict``
(your own images) and the notebook's worked example. No stage imports this folder."""
