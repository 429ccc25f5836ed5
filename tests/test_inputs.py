"""Every input is read as DVC reads it, bounded, and refused in one line when it cannot be.

params.yaml is YAML 1.2 for the stages exactly as for ``dvc params diff``; YAML, JSON and CSV
reads stop at a size limit per kind; deep nesting is one line, not a crash; settings that
change no output rerun no stage; ``dvc exp run -S`` rewrites only the line it sets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, error_line, run
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import MAX_TEXT_BYTES, read_csv, read_json
from mnist_pipeline.core.params import MAX_YAML_DEPTH, read_yaml
from mnist_pipeline.tools.params import SECTIONS, load_params

# YAML 1.1 and 1.2 disagree on each of these; DVC reads YAML 1.2 (ruamel.yaml).
YAML_CASES = {
    "exponent": ("lr: 1e-3\n", 0.001),
    "yes_is_a_string": ("verify: yes\n", "yes"),
    "underscores": ("n: 1_000\n", 1000),
    "octal_1_2": ("n: 0o17\n", 15),
    "leading_zero": ("n: 017\n", 17),
    "merge_key": ("base: &b {lr: 0.5}\nmerged:\n  <<: *b\n  epochs: 2\n", {"lr": 0.5, "epochs": 2}),
    "null_empty": ("mirror:\n", None),
    "flow_list": ("hidden: [128]\n", [128]),
}


def _dvc_reads(text: str, tmp_path: Path) -> Any:
    """What DVC's params loader (``dvc params show/diff``, ``dvc.api.params_show``) reads."""
    from dvc.utils.serialize import LOADERS

    path = tmp_path / "dvc_view.yaml"
    path.write_text(text)
    return LOADERS[".yaml"](str(path), None)


@pytest.mark.parametrize("case", YAML_CASES)
def test_params_yaml_values_equal_dvcs(case: str, tmp_path: Path) -> None:
    text, expected = YAML_CASES[case]
    (tmp_path / "params.yaml").write_text(text)
    ours = read_yaml(tmp_path / "params.yaml")
    assert ours == _dvc_reads(text, tmp_path)
    assert list(ours.values())[-1] == expected


# Subprocess: `dvc init` makes the real DVC repo that `params_show` reads.
def test_params_show_agrees_with_the_stages(tmp_path: Path) -> None:
    """``dvc.api.params_show`` on a real DVC repo reads what ``load_params`` validates."""
    import dvc.api

    text = (REPO / "params.yaml").read_text().replace("lr: 0.01", "lr: 1e-3")
    text = text.replace("verify: true", "verify: true\n  <<: {split_seed: 3}")
    text = text.replace("split_seed: 0         #", "#")  # the merge key sets it instead
    (tmp_path / "params.yaml").write_text(text)
    run([sys.executable, "-m", "dvc", "init", "-q", "--no-scm"], tmp_path)
    shown = dvc.api.params_show(repo=str(tmp_path))
    params = load_params(tmp_path / "params.yaml")
    assert params.train.lr == shown["train"]["lr"] == 0.001
    assert params.data.split_seed == shown["data"]["split_seed"] == 3


def test_yes_is_no_boolean(tmp_path: Path) -> None:
    """DVC reads ``verify: yes`` as the string "yes"; the stage refuses it, naming the key."""
    (tmp_path / "params.yaml").write_text("data:\n  verify: yes\ntrain:\nreport:\n")
    with pytest.raises(PipelineError, match=r"data\.verify: expected true or false, got 'yes'"):
        load_params(tmp_path / "params.yaml")


def test_duplicate_key_is_one_line_in_linear_time(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("a: 1\nb: 2\na: 3\n")
    with pytest.raises(PipelineError, match=r"^.*p\.yaml: duplicate key 'a' at line 3; keep only"):
        read_yaml(path)
    # 40,000 keys, the last a duplicate: refused like the small file (a quadratic check
    # took 20 s here), naming its line
    path.write_text("".join(f"k{i}: {i}\n" for i in range(40_000)) + "k7: 0\n")
    with pytest.raises(PipelineError, match="duplicate key 'k7' at line 40001"):
        read_yaml(path)


def test_duplicate_key_with_control_characters_stays_one_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text('"k\\nerror: forged\\x1b[31m": 1\n"k\\nerror: forged\\x1b[31m": 2\n')
    with pytest.raises(PipelineError) as caught:
        read_yaml(path)
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)


@pytest.mark.parametrize(
    "text", ["[" * 100_000, "a:\n" + "".join(" " * n + "a:\n" for n in range(1, 200))]
)
def test_deep_yaml_is_one_line(text: str, tmp_path: Path) -> None:
    """Deep nesting stops before anything is built (libyaml's composer would crash)."""
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(PipelineError, match=f"nested deeper than {MAX_YAML_DEPTH} levels"):
        load_params(tmp_path / "params.yaml")


# Subprocess: the exit status and stderr of `python -m mnist_pipeline validate`.
def test_deep_params_and_dvc_yaml_are_one_line_in_validate(tmp_path: Path) -> None:
    """``validate`` (DVC's round-trip loader for dvc.yaml) says it in one line too."""
    (tmp_path / "dvc.yaml").write_text("stages: " + "[" * 50_000 + "\n")
    (tmp_path / "params.yaml").write_text("data: " + "{a: " * 5_000 + "\n")
    result = run(
        [sys.executable, "-m", "mnist_pipeline", "validate"], tmp_path, False, REPO / "src"
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("error: dvc.yaml: nested deeper than") for line in lines), lines
    assert any(line.startswith("error: params.yaml: nested deeper than") for line in lines), lines


def test_deep_json_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "eval.json").write_text("[" * 100_000)
    with pytest.raises(PipelineError, match=r"eval\.json: not valid JSON"):
        read_json(tmp_path / "eval.json")


@pytest.mark.parametrize(
    ("reader", "kind"), [(read_yaml, "YAML"), (read_json, "JSON"), (read_csv, "CSV")]
)
def test_reads_stop_at_the_size_limit(reader: Any, kind: str, tmp_path: Path) -> None:
    path = tmp_path / f"big.{kind.lower()}"
    with open(path, "wb") as handle:
        handle.truncate(MAX_TEXT_BYTES[kind] + 1)  # sparse: costs no disk
    with pytest.raises(PipelineError, match=f"larger than the .* MiB a {kind} file may hold"):
        reader(path)


# Subprocess: the bound is on the whole command, imports included.
def test_a_stage_given_dev_zero_as_params_stops_fast_in_one_line(tmp_path: Path) -> None:
    """An endless file costs the limit, not the machine."""
    start = time.monotonic()
    cmd = [sys.executable, str(REPO / "stages/download.py"), "--params", "/dev/zero", "--out", "o"]
    result = run(cmd, tmp_path, False, REPO / "src")
    assert time.monotonic() - start < 60  # the whole process, imports included
    assert "larger than the 4 MiB a YAML file may hold" in error_line(result)


# Subprocess: a real SIGTERM while the process is blocked in read().
def test_sigterm_stops_a_read_of_an_endless_file(tmp_path: Path) -> None:
    """SIGTERM during a read: the stage unwinds with its one line, exit 128 + 15."""
    fifo = tmp_path / "endless.yaml"
    os.mkfifo(fifo)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    cmd = [sys.executable, str(REPO / "stages/download.py"), "--params", str(fifo), "--out", "o"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    with open(fifo, "wb") as writer:  # opens once the reader has: it is blocked in read()
        writer.write(b"[" * 1000)
        writer.flush()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "interrupted by SIGTERM" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("mirror", ["/data\nerror: forged", "/data\x00", "/data/\x1b[2J"])
def test_control_characters_in_mirror_are_one_escaped_line(
    mirror: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stage's one line names the folder with its control characters escaped."""
    from mnist_pipeline.core.cli import entry_point
    from mnist_pipeline.data.params import DataParams
    from mnist_pipeline.data.sources import fetch

    params = DataParams(source="mirror", mirror=mirror)
    assert entry_point(lambda _: fetch(params, tmp_path) and None)([]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.isprintable() and "no such directory" in line


TOOLS = ["validate", "predict", "worked-example", "preset", "serve"]
STAGES = ["download", "preprocess", "train", "evaluate", "report"]
# Every tool's and stage's `--help`, as `python -m mnist_pipeline TOOL --help` and
# `python stages/NAME.py --help` run it, one after another in this process: name -> the exit
# status and what it printed (a traceback as the output, status 1, if one raised).
HELP_ALL = """
import contextlib, io, json, runpy, sys, traceback
results = {}
for name in json.loads(sys.argv[1]):
    out, code = io.StringIO(), 1
    script = name.endswith(".py")
    sys.argv = [name, "--help"] if script else ["mnist_pipeline", name, "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if script:
                runpy.run_path(name, run_name="__main__")
            else:
                runpy.run_module("mnist_pipeline", run_name="__main__", alter_sys=True)
    except SystemExit as end:
        code = end.code or 0
    except Exception:
        out.write(traceback.format_exc())
    results[name] = [code, out.getvalue()]
print(json.dumps(results))
"""


# Subprocess: -OO is an interpreter flag; it strips docstrings at import. Slow: it compiles
# every module it imports (torch's too) without docstrings the first time.
@pytest.mark.slow
def test_every_tool_and_stage_runs_under_python_OO() -> None:
    """``--help`` of every tool and stage in one ``python -OO`` process."""
    names = TOOLS + [str(REPO / "stages" / f"{name}.py") for name in STAGES]
    cmd = [sys.executable, "-OO", "-c", HELP_ALL, json.dumps(names)]
    result = run(cmd, REPO, True, REPO / "src")
    helps = json.loads(result.stdout.splitlines()[-1])
    assert list(helps) == names
    for name, (code, output) in helps.items():
        assert code == 0 and output.startswith("usage:"), (name, output)


# ------------------------------------------------------- what DVC tracks and writes back


def test_every_setting_is_tracked_by_a_stage() -> None:
    """The stages' ``params:`` (as DVC reads them) together track every key of the schema, so
    no setting that changes an output is forgotten."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        listed = {
            key
            for stage in repo.index.stages
            for dep in stage.deps
            if hasattr(dep, "params")
            for key in dep.params
        }
    every = {f"{name}.{key}" for name, section in SECTIONS.items() for key in section.model_fields}
    assert {key for key in every if key in listed or key.split(".")[0] in listed} == every


def test_dvc_exp_set_param_changes_exactly_the_line_it_sets(tmp_path: Path) -> None:
    """``dvc exp run -S`` writes params.yaml through ``apply_overrides`` (ruamel's
    round-trip dump): the committed file is already in that form."""
    from dvc.utils.hydra import apply_overrides

    original = (REPO / "params.yaml").read_text().splitlines()
    for override, line in (
        ("train.lr=0.05", "  lr: 0.05"),
        ("data.split_seed=3", "  split_seed: 3"),
    ):
        path = tmp_path / "params.yaml"
        shutil.copy(REPO / "params.yaml", path)
        apply_overrides(str(path), [override])
        after = path.read_text().splitlines()
        assert len(after) == len(original)
        changed = [(a, b) for a, b in zip(original, after, strict=True) if a != b]
        assert len(changed) == 1 and changed[0][1].startswith(line), changed


# Subprocess: what the front door writes to a real stderr, and its exit status.
def test_an_error_line_never_carries_control_characters(tmp_path: Path) -> None:
    """Whatever a message quotes (here a path with a newline and an ANSI escape), the
    entry point prints one line with the control characters escaped."""
    path = tmp_path / "p\nerror: forged\x1b[31m.yaml"
    cmd = [sys.executable, str(REPO / "stages/download.py"), "--params", str(path), "--out", "o"]
    line = error_line(result := run(cmd, tmp_path, False, REPO / "src"))
    assert "\\nerror: forged\\x1b[31m.yaml: file not found" in line
    assert "\x1b" not in result.stderr
