"""Commands outside the DAG: validate, predict, preset, the worked example; the params schema."""
