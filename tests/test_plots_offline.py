"""`dvc plots show` / `dvc plots diff` pages render in a real browser with no network.

DVC's own page loads vega, vega-lite and vega-embed from a CDN; `.dvc/config` points
`plots.html_template` at vendor/vega/plots.html, which carries them inline. Each test
writes a page in a copy of the project (the committed results; `dvc plots diff HEAD` draws
the workspace and HEAD side by side), opens it in headless Chromium with every network request
failing (a dead proxy, no DNS), and requires a drawn vega view (``<svg class="marks">`` or
``<canvas class="marks">``) inside every plot's ``<div>``; the plots expected are the ones
``dvc plots ... --json`` lists. A control page from DVC's default template, opened the
same way, must draw nothing: that proves the browser really had no network.

Needs Debian's ``chromium`` (or $CHROMIUM, or Chrome); skips with the reason otherwise.
`make ci` installs it where it can (.ci/plots.sh) and runs this file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import copy_project, run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no headless browser: install Debian's chromium (apt-get install chromium) "
    "or set CHROMIUM=/path/to/chrome; `make ci` installs it where it can",
)

# A vega view that vega-embed finished drawing; the 16×16 <svg> of its menu is not one.
DRAWN = re.compile(r'<(svg|canvas)\b[^>]*\bclass="marks"')


def dump_dom(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after its scripts ran, with every network request failing."""
    command = [
        str(BROWSER),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--proxy-server=127.0.0.1:9",  # the discard port: nothing answers
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=20000",  # ms of page time for scripts and vega's rendering
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def plot_views(page_source: str, dom: str) -> dict[str, bool]:
    """Each plot ``<div>`` id on the page -> whether a drawn view sits inside it.

    DVC writes one ``<div id="...">`` with a ``vegaEmbed('#id', spec)`` call per plot, one
    after another; a plot's part of the DOM runs from its div to the next plot's div.
    """
    ids = re.findall(r"vegaEmbed\('#([^']+)'", page_source)
    starts = [dom.index(f'id="{plot_id}"') for plot_id in ids]
    ends = [*starts[1:], len(dom)]
    return {
        plot_id: bool(DRAWN.search(dom, start, end))
        for plot_id, start, end in zip(ids, starts, ends, strict=True)
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy with its committed results: `dvc plots diff HEAD` draws two revisions."""
    project = copy_project(tmp_path_factory.mktemp("plots") / "project")
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "committed results"], project)
    return project


@pytest.mark.parametrize("command", [["show"], ["diff", "HEAD"]], ids=["show", "diff"])
def test_every_plot_renders_offline(project: Path, command: list[str], tmp_path: Path) -> None:
    out = tmp_path / "plots"
    run(["dvc", "plots", *command, "-o", str(out)], project)
    listed = json.loads(run(["dvc", "plots", *command, "--json"], project).stdout)["data"]
    page = (out / "index.html").read_text()
    assert "cdn.jsdelivr.net" not in page and "<script src=" not in page

    views = plot_views(page, dump_dom(out / "index.html", tmp_path / "profile"))
    assert len(views) == len(listed) >= 2, (sorted(listed), views)
    assert all(views.values()), views


def test_every_dvc_template_renders_offline(project: Path, tmp_path: Path) -> None:
    """Each of DVC's built-in templates (what a `plots:` entry may name) draws offline."""
    from dvc_render.vega_templates import TEMPLATES

    def plot(template: str) -> dict[str, dict[str, object]]:
        confusion = template.startswith("confusion")  # per-sample rows: actual, predicted
        x, source, y = (
            ("actual", "metrics/predictions.csv", "predicted")
            if confusion
            else ("epoch", "metrics/train_log.csv", "test_accuracy")
        )
        return {f"template {template}": {"template": template, "x": x, "y": {source: y}}}

    names = [template.DEFAULT_NAME for template in TEMPLATES]
    dvc_yaml = project / "dvc.yaml"
    pipeline = yaml.safe_load(dvc_yaml.read_text())
    dvc_yaml.write_text(yaml.safe_dump({**pipeline, "plots": [plot(name) for name in names]}))
    try:
        out = tmp_path / "plots"
        run(["dvc", "plots", "show", "-o", str(out)], project)
    finally:
        run(["git", "checkout", "--", "dvc.yaml"], project)
    page = (out / "index.html").read_text()

    views = plot_views(page, dump_dom(out / "index.html", tmp_path / "profile"))
    assert len(views) >= len(names) and all(views.values()), views


def test_dvc_default_page_draws_nothing_offline(project: Path, tmp_path: Path) -> None:
    """The control: the same plots on DVC's CDN page stay blank, so the network was off."""
    from dvc_render.html import PAGE_HTML

    template = tmp_path / "cdn.html"
    template.write_text(PAGE_HTML)
    out = tmp_path / "plots"
    run(["dvc", "plots", "diff", "HEAD", "-o", str(out), "--html-template", str(template)], project)
    page = (out / "index.html").read_text()
    assert "cdn.jsdelivr.net" in page

    views = plot_views(page, dump_dom(out / "index.html", tmp_path / "profile"))
    assert views and not any(views.values()), views
