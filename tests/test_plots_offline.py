"""`dvc plots show` / `dvc plots diff` pages render in a real browser with no network, and a
diff of two commits tells the revisions apart.

DVC's own page loads vega, vega-lite and vega-embed from a CDN; `.dvc/config` points
`plots.html_template` at vendor/vega/plots.html, which carries them inline. Each test
writes a page in a copy of the project (the committed results; `dvc plots diff HEAD` draws
the workspace and HEAD side by side), opens it in headless Chromium with every network request
failing (a dead proxy, no DNS), and requires a drawn vega view (``<svg class="marks">`` or
``<canvas class="marks">``) inside every plot's ``<div>``; the plots expected are the ones
``dvc plots ... --json`` lists. A control page from DVC's default template, opened the
same way, must draw nothing: that proves the browser really had no network.

The screenshot test opens `dvc plots diff HEAD~1 HEAD` of two commits (the committed default
run, then a run with a validation split) in Chromium through Playwright, reads each drawn
vega view (its colour scale and the text of its SVG) and saves a screenshot: every chart has
one colour and one legend entry per revision (the heatmap one panel per revision, each
named), the curves' subtitles name the splits the logs hold, and the console stays empty.

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
pytestmark = [
    pytest.mark.slow,  # a real browser: `make test`, not `make test-fast`
    pytest.mark.skipif(
        BROWSER is None,
        reason="no headless browser: install Debian's chromium (apt-get install chromium) "
        "or set CHROMIUM=/path/to/chrome; `make ci` installs it where it can",
    ),
]

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


# Subprocess: `dvc plots` writes the page; headless Chromium draws it.
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


# Subprocess: `dvc plots show` writes the page; headless Chromium draws it.
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


# Subprocess: `dvc plots diff` writes the page; headless Chromium draws it.
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


# ------------------------------------------------- `dvc plots diff` of two commits, looked at

# Keeps each view vega-embed draws (DVC's page calls vegaEmbed and drops the result).
KEEP_VIEWS = """
window.__views = [];
let embed;
Object.defineProperty(window, "vegaEmbed", {
  configurable: true,
  set(value) { embed = value; },
  get() {
    return embed && ((el, spec, opts) => embed(el, spec, opts).then((result) => {
      window.__views.push([el, result.view]);
      return result;
    }));
  },
});
"""
READ_VIEWS = """async () => Promise.all(window.__views.map(async ([id, view]) => {
  const color = view.scale("color");  // every chart here has one; vega throws otherwise
  const svg = await view.toSVG();
  const texts = [...svg.matchAll(/<text[^>]*>([^<]*)<\\/text>/g)].map((m) => m[1]);
  return {id, domain: color.domain(), range: color.range(), texts};
}))"""
# A run with a validation slice: what the second commit's train stage would have logged.
VALIDATED_LOG = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,shipped\n" + "".join(
    f"{e},{0.7 / e:.6f},{0.8 + 0.015 * e:.6f},{0.75 / e + 0.02:.6f},{0.78 + 0.014 * e:.6f},"
    f"{int(e == 8)}\n"
    for e in range(1, 11)
)


def look_at(page_path: Path, screenshot: Path) -> tuple[list[dict], list[str]]:
    """Every drawn view of ``page_path`` (colour domain and range, SVG texts) and every console
    message or page error, with all network requests failing; a full-page screenshot."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    n_views = len(re.findall(r"vegaEmbed\('#", page_path.read_text()))
    messages: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: messages.append(f"pageerror: {error}"))
        page.route(
            "**/*",
            lambda route: (
                route.abort() if not route.request.url.startswith("file:") else route.continue_()
            ),
        )
        page.add_init_script(KEEP_VIEWS)
        page.goto(page_path.as_uri())
        page.wait_for_function(f"window.__views.length === {n_views}", timeout=60_000)
        views = page.evaluate(READ_VIEWS)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return views, messages


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed results, then a commit of a run with a validation split and other scores."""
    project = copy_project(tmp_path_factory.mktemp("two-runs") / "project")
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "default run"], project)
    (project / "metrics" / "train_log.csv").write_text(VALIDATED_LOG)
    per_class = project / "metrics" / "per_class.csv"
    header, *rows = per_class.read_text().splitlines()
    scaled = [",".join([c[0], *(f"{float(v) * 0.9:.6f}" for v in c[1:4]), c[4]])
              for c in (row.split(",") for row in rows)]  # fmt: skip
    per_class.write_text("\n".join([header, *scaled]) + "\n")
    run(["git", "commit", "-qam", "a run with a validation split"], project)
    return project


# Subprocess: `dvc plots diff` writes the page; Chromium (Playwright) draws it.
def test_plots_diff_of_two_commits_tells_the_revisions_apart(
    two_runs: Path, tmp_path: Path
) -> None:
    run(["dvc", "plots", "diff", "HEAD~1", "HEAD", "-o", str(tmp_path / "plots")], two_runs)
    screenshot = tmp_path / "plots-diff.png"
    views, messages = look_at(tmp_path / "plots" / "index.html", screenshot)
    assert messages == []  # no "Infinite extent", no error
    assert screenshot.stat().st_size > 50_000  # five drawn charts, not a blank page
    by_id = {view["id"]: view for view in views}
    assert set(by_id) == {"#Loss", "#Accuracy", "#Per-class_scores__test_set_",
                          "#Reliability__test_set_", "#metrics_confusion_counts_csv"}  # fmt: skip
    for plot in ("#Loss", "#Accuracy", "#Per-class_scores__test_set_", "#Reliability__test_set_"):
        view = by_id[plot]
        assert view["domain"] == ["HEAD~1", "HEAD"], plot  # a legend entry naming each
        assert len(set(view["range"][:2])) == 2, plot  # ... in a colour of its own
        assert {"HEAD~1", "HEAD", "rev"} <= set(view["texts"]), plot  # the legend drawn
    heatmap = by_id["#metrics_confusion_counts_csv"]["texts"]
    assert heatmap.count("HEAD~1") == heatmap.count("HEAD") == 1  # one named panel each
    assert "train (solid) and validation (dashed)" in by_id["#Loss"]["texts"]
    splits = "train (solid), validation (dashed) and test (dotted)"
    assert splits in by_id["#Accuracy"]["texts"]


# Subprocess: `dvc plots diff` writes the page; Chromium (Playwright) draws it.
def test_plots_of_the_default_run_name_no_validation_split(two_runs: Path, tmp_path: Path) -> None:
    """The default run logs train loss and test accuracy: the subtitles say so, and the
    shipped-epoch rule of a log without one logs nothing in the console."""
    run(["git", "checkout", "HEAD~1", "--", "metrics"], two_runs)
    try:
        run(["dvc", "plots", "diff", "HEAD~1", "-o", str(tmp_path / "plots")], two_runs)
    finally:
        run(["git", "checkout", "HEAD", "--", "metrics"], two_runs)
    views, messages = look_at(tmp_path / "plots" / "index.html", tmp_path / "plots.png")
    assert messages == []
    texts = {view["id"]: view["texts"] for view in views}
    assert "train split" in texts["#Loss"] and "test split" in texts["#Accuracy"]
    assert not any("validation" in text for text in texts["#Loss"] + texts["#Accuracy"])
    assert {"workspace", "HEAD~1"} <= set(texts["#Loss"])
