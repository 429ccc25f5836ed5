"""The front door: ``python -m mnist_pipeline`` lists its commands; ``--help`` works on each."""

import sys

import pytest

from conftest import REPO, run
from mnist_pipeline.__main__ import COMMANDS, main


# Subprocess: the front door's one exit-status check as a command (`python -m`).
def test_front_door_lists_the_commands() -> None:
    result = run([sys.executable, "-m", "mnist_pipeline", "--help"], REPO, src=REPO / "src")
    for name in ("params", "validate", "compare", "summary", "worked-example"):
        assert f"    {name}" in result.stdout


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_works_on_each_command(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    usage = capsys.readouterr().out.splitlines()[0]  # predict: also the mnist-predict script
    assert usage.startswith(("usage: python -m mnist_pipeline", "usage: mnist-")) and name in usage


def test_a_command_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(REPO / "no-such.json")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
