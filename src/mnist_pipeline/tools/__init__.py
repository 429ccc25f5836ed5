"""Commands outside the DAG: ``validate`` (CI's checks), ``predict`` (your own images),
presets and the notebook's worked example. No stage imports this folder."""
