"""The front door: ``python -m mnist_pipeline`` lists its commands; ``--help`` works on each."""

import sys

import pytest

from conftest import REPO, run
from mnist_pipeline.__main__ import COMMANDS, main


# Subprocess: the front door's one exit-status check as a command (`python -m`).
def test_front_door_lists_the_commands() -> None:
    result = run([sys.executable, "-m", "mnist_pipeline", "--help"], REPO, src=REPO / "src")
    for name in ("validate", "predict", "serve", "worked-example"):
        assert f"    {name}" in result.stdout


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_works_on_each_command(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    usage = capsys.readouterr().out.splitlines()[0]  # predict: also the mnist-predict script
    assert usage.startswith(("usage: python -m mnist_pipeline", "usage: mnist-")) and name in usage


def test_a_command_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--model", str(REPO / "no-such.onnx"), "x.png"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize(
    ("argv0", "typed"),
    [
        ("/venv/bin/mnist-pipeline", "mnist-pipeline"),
        ("/checkout/src/mnist_pipeline/__main__.py", "python -m mnist_pipeline"),
    ],
)
def test_usage_names_the_command_as_typed(
    argv0: str, typed: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mnist-pipeline predict --help`` says ``usage: mnist-pipeline predict``;
    ``python -m mnist_pipeline predict --help`` says ``usage: python -m mnist_pipeline predict``."""
    monkeypatch.setattr(sys, "argv", [argv0])
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert capsys.readouterr().out.startswith(f"usage: {typed} {name} ")
    assert sys.argv == [argv0]  # as it was


def test_mnist_predict_names_itself(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_pipeline.tools import predict

    monkeypatch.setattr(sys, "argv", ["/venv/bin/mnist-predict"])
    with pytest.raises(SystemExit):
        predict.main(["--help"])
    assert capsys.readouterr().out.startswith("usage: mnist-predict ")


def test_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"mnist-pipeline {version('mnist-pipeline')}\n"
