"""Commands outside the DAG: validate, predict, preset, exps, the worked example."""
