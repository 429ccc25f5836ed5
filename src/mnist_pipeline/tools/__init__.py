"""Commands outside the DAG: params, validate, predict, preset, the worked example."""
