"""Commands outside the DAG: ``validate`` (CI's checks), ``predict`` (your own images),
``preset`` and the notebook's worked example. No stage imports this folder."""
