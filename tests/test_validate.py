"""``make validate`` catches every seeded breakage with one line per problem.

Each test breaks one thing in a fresh copy of the project (the ``project`` fixture) and
runs ``validate``'s ``main`` there as ``make validate`` does: exit 2 and a line naming the
file, key and fix. The slow test runs the CI smoke configuration in two clean clones:
identical ``dvc.lock`` hashes for every output (determinism), the metric floors of
``.ci/thresholds.yaml``, a clean ``dvc status -q``, then a stale lock caught.

    .venv/bin/python -m pytest tests/test_validate.py [-m "not slow"]
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from conftest import REPO, copy_project, run
from mnist_pipeline.tools.validate import main, stage_scripts

SMOKE = ["-S", "data.source=embedded", "-S", "train.epochs=2"]  # as .ci/pipeline.sh


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def validate(root: Path, *args: str) -> Result:
    """``make validate`` in ``root``: ``main`` in process, its output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return Result(code, out.getvalue(), err.getvalue())


def problems(result: Result) -> list[str]:
    """The ``error:`` lines of a failed run (exit 2, nothing else on stderr)."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), result.stderr
    return lines


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_repository_passes() -> None:
    result = validate(REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "validate: ok: dvc.yaml (schema, DAG, deps), params.yaml\n"


def test_a_module_missing_from_a_stages_deps(project: Path) -> None:
    dvc_yaml = project / "dvc.yaml"
    edit(dvc_yaml, "      - src/mnist_pipeline/core\n", "")  # the first: download's
    found = problems(validate(project))
    assert (
        "error: dvc.yaml: stages.download.deps: missing src/mnist_pipeline/core/io.py, "
        "which stages/download.py imports; add it to deps so editing it reruns the stage"
    ) in found


def test_a_new_transitive_import_missing_from_deps(project: Path) -> None:
    edit(
        project / "src/mnist_pipeline/data/sources.py",
        "from mnist_pipeline.core.errors import PipelineError\n",
        "from mnist_pipeline.core.errors import PipelineError\n"
        "from mnist_pipeline.reporting import report\n",
    )
    found = " ".join(problems(validate(project)))
    for stage in ("download", "preprocess"):  # both import sources
        assert (
            f"stages.{stage}.deps: missing src/mnist_pipeline/reporting/report.py, which "
            f"stages/{stage}.py imports"
        ) in found


def test_the_package_init_is_no_dep_while_it_holds_only_a_docstring(project: Path) -> None:
    """It cannot change an output, so no stage lists it (16 deps in `dvc exp show`) ...
    until it holds code: then every stage must, and validate says so."""
    init = project / "src/mnist_pipeline/__init__.py"
    assert "src/mnist_pipeline/__init__.py" not in (project / "dvc.yaml").read_text()
    init.write_text(init.read_text() + "\nimport os\n")
    found = " ".join(problems(validate(project)))
    for stage in ("download", "preprocess", "train", "evaluate", "report"):
        assert f"stages.{stage}.deps: missing src/mnist_pipeline/__init__.py, which" in found


def test_a_dep_that_nothing_imports(project: Path) -> None:
    dvc_yaml = project / "dvc.yaml"
    edit(
        dvc_yaml,
        "      - src/mnist_pipeline/data\n",
        "      - src/mnist_pipeline/data\n      - src/mnist_pipeline/reporting\n",
    )
    assert (
        "error: dvc.yaml: stages.download.deps: lists "
        "src/mnist_pipeline/reporting but stages/download.py never imports a module in it "
        "(directly or through other modules); remove it from deps"
    ) in problems(validate(project))


def test_a_params_key_that_params_yaml_lacks(project: Path) -> None:
    dvc_yaml = project / "dvc.yaml"
    edit(dvc_yaml, "      - train.threads\n", "      - train.thread\n")
    assert (
        "error: dvc.yaml: DVC cannot build the pipeline: Parameters 'train.thread' are missing "
        "from 'params.yaml'; fix dvc.yaml (check with `dvc dag`)"
    ) in problems(validate(project))


def test_an_invalid_dvc_yaml_key(project: Path) -> None:
    dvc_yaml = project / "dvc.yaml"
    edit(dvc_yaml, "    outs:\n      - data/processed:\n", "    outz:\n      - data/processed:\n")
    assert problems(validate(project)) == [
        "error: dvc.yaml: DVC cannot build the pipeline: './dvc.yaml' validation failed: extra "
        "keys not allowed @ data['stages']['preprocess']['outz']; fix dvc.yaml (check with "
        "`dvc dag`)"
    ]


def test_a_wrong_value_type(project: Path) -> None:
    edit(project / "dvc.yaml", "  train:\n", "  train:\n    frozen: 'no'\n")
    found = problems(validate(project))
    assert "expected bool for dictionary value @ data['stages']['train']['frozen']" in found[0]


def test_a_dag_dvc_refuses(project: Path) -> None:
    dvc_yaml = project / "dvc.yaml"
    spec = yaml.safe_load(dvc_yaml.read_text())
    spec["stages"]["train"]["outs"].append("data/processed")  # preprocess's output too
    dvc_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
    found = problems(validate(project))
    assert any(
        p.startswith("error: dvc.yaml: DVC cannot build the pipeline: output 'data/processed'")
        and p.endswith("fix dvc.yaml (check with `dvc dag`)")
        for p in found
    ), found


def test_dvc_yaml_that_is_not_yaml(project: Path) -> None:
    (project / "dvc.yaml").write_text("stages:\n  train: [\n")
    assert problems(validate(project)) == [
        "error: dvc.yaml: DVC cannot build the pipeline: unable to read: 'dvc.yaml', YAML file "
        "structure is corrupted: did not find expected node content; fix dvc.yaml (check with "
        "`dvc dag`)"
    ]


def test_every_bad_params_key_gets_a_line(project: Path) -> None:
    params = project / "params.yaml"
    edit(params, "  lr: ", "  lrr: ")
    edit(params, "  epochs: ", "  epochs: ten #")
    found = problems(validate(project))
    assert found[0].startswith(
        "error: params.yaml: train.lrr: unknown key; did you mean 'train.lr'?"
    )
    assert "error: params.yaml: train.epochs: expected an integer, got 'ten'" in found


def below_the_ci_floors(project: Path) -> dict[str, float]:
    """The metrics of ``project`` under their floor in ``.ci/thresholds.yaml``."""
    floors = yaml.safe_load((REPO / ".ci/thresholds.yaml").read_text())["metrics/eval.json"]
    metrics = json.loads((project / "metrics/eval.json").read_text())
    return {name: metrics[name] for name, floor in floors.items() if metrics[name] < floor}


def test_the_ci_floors_hold_for_the_committed_metrics() -> None:
    assert below_the_ci_floors(REPO) == {}


def lock_hashes(project: Path) -> dict[str, dict[str, object]]:
    """``path -> {md5, size, nfiles}`` of every dep and out that dvc.lock records."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {
        f"{stage}:{kind}:{entry['path']}": {k: entry.get(k) for k in ("md5", "size", "nfiles")}
        for stage, spec in lock["stages"].items()
        for kind in ("deps", "outs")
        for entry in spec.get(kind, [])
    }


# Subprocess: `dvc exp run` itself, in a clean clone, as CI runs it.
@pytest.mark.slow
def test_two_clean_clones_give_identical_hashes_then_validate(
    tmp_path: Path, reproduced: Path
) -> None:
    """The session's reproduced project is one clean clone's smoke run (params set in the
    file, ``dvc repro``); here another clean clone runs it as CI does (params via -S)."""
    clone = copy_project(tmp_path / "clone")
    run(["git", "add", "-A"], clone)
    run(["git", "commit", "-qm", "base"], clone)
    run(["dvc", "exp", "run", *SMOKE], clone)  # shares nothing with `reproduced`
    first, second = lock_hashes(clone), lock_hashes(reproduced)
    outs = [key for key in first if ":outs:" in key]
    assert len(outs) >= 7 and all(first[key]["md5"] for key in outs)
    assert first == second

    assert below_the_ci_floors(clone) == {}
    assert validate(clone).returncode == 0
    assert run(["dvc", "status", "-q"], clone).returncode == 0  # CI's up-to-date check

    # A stale lock: code that a stage depends on changed after the run.
    with (clone / "src/mnist_pipeline/core/errors.py").open("a") as handle:
        handle.write("# edited after the run\n")
    assert run(["dvc", "status", "-q"], clone, check=False).returncode == 1
    stale = json.loads(run(["dvc", "status", "--json"], clone).stdout)
    stages = yaml.safe_load((clone / "dvc.yaml").read_text())["stages"]
    assert set(stale) == set(stages)  # every stage imports errors
    assert {"changed deps": {"src/mnist_pipeline/core": "modified"}} in stale["download"]


# ------------------------------------------------- templates, foreach, empty, long cmd


def test_vars_and_interpolation_resolve_as_dvc_resolves_them(project: Path) -> None:
    """``vars:`` and ``${...}`` are filled by DVC's own resolver: a templated script path
    and deps pass (a raw reading called them missing)."""
    dvc_yaml = project / "dvc.yaml"
    edit(dvc_yaml, "stages:\n", "vars:\n  - code: src/mnist_pipeline\nstages:\n")
    edit(dvc_yaml, "      - src/mnist_pipeline/core\n", "      - ${code}/core\n")
    edit(dvc_yaml, "      - stages/download.py\n", "      - ${script}\n")
    edit(dvc_yaml, "python stages/download.py", "python ${script}")
    edit(
        dvc_yaml,
        "  - code: src/mnist_pipeline\n",
        "  - code: src/mnist_pipeline\n    script: stages/download.py\n",
    )
    result = validate(project)
    assert result.returncode == 0, result.stderr


def test_an_unresolvable_template_is_one_line(project: Path) -> None:
    edit(project / "dvc.yaml", "      - src/mnist_pipeline/core\n", "      - ${nowhere}/core\n")
    found = problems(validate(project))
    assert any("nowhere" in line for line in found), found


def test_a_foreach_stage_missing_deps_is_caught(project: Path) -> None:
    """Each generated stage is checked like a plain one (they were skipped)."""
    head, plots = (project / "dvc.yaml").read_text().split("\nplots:\n")
    (project / "dvc.yaml").write_text(
        head.rstrip("\n") + "\n\n  summaries:\n    foreach: [a, b]\n    do:\n"
        "      cmd: PYTHONPATH=src python stages/report.py --out out-${item}\n"
        "      deps:\n        - stages/report.py\n\nplots:\n" + plots
    )
    found = " ".join(problems(validate(project)))
    for name in ("summaries@a", "summaries@b"):
        assert f"stages.{name}.deps: missing src/mnist_pipeline/core/io.py" in found, found


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "stages: {}\n"])
def test_an_empty_dvc_yaml_is_refused(project: Path, text: str) -> None:
    (project / "dvc.yaml").write_text(text)
    found = problems(validate(project))
    assert "error: dvc.yaml: no stages; define the pipeline under 'stages:'" in found


def test_a_megabyte_cmd_is_read_in_linear_time() -> None:
    """The cmd's scripts: a 1 MB word is one regex pass (shlex took 20 s on it)."""
    start = time.process_time()
    cmd = "python 'stages/train.py' --x " + "y" * 1_000_000 + ".py 'a b'"
    assert stage_scripts(cmd, REPO) == ["stages/train.py"]
    assert time.process_time() - start < 5


# A "billion laughs": ten nested lists of ten aliases (1e10 values); the dict form too.
LIST_BOMB = "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}' if i else 'x'] * 10)}]\n" for i in range(10)
)
DICT_BOMB = "".join(
    f"b{i}: &b{i} {{{', '.join(f'k{k}: ' + (f'*b{i - 1}' if i else '1') for k in range(10))}}}\n"
    for i in range(10)
)


@pytest.mark.parametrize("bomb", [LIST_BOMB, DICT_BOMB], ids=["list", "dict"])
def test_a_yaml_alias_bomb_is_refused_in_seconds(project: Path, bomb: str) -> None:
    """DVC's resolver would copy every alias of params.yaml (minutes, gigabytes): its checks
    wait for a valid params.yaml."""
    params = project / "params.yaml"
    params.write_text(bomb + params.read_text())
    start = time.monotonic()
    found = problems(validate(project))
    assert time.monotonic() - start < 5
    assert found[0].endswith(": unknown section (allowed: data, train, report)")
    assert all(line.startswith("error: params.yaml: ") for line in found)
