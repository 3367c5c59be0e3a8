"""The Dagster UI in a real browser: Debian's headless Chromium, driven by Playwright.

The webserver (shared with test_ui) serves a tiny project whose graph has been
materialized; the asset group's lineage page must render all six assets. The screenshot
goes to tests/output/asset-graph.png and, for the README, to docs/img/asset-graph.png when
that is absent or MDP_UPDATE_DOCS_IMAGES=1.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from ui_helpers import ASSETS, REPO, UiProject, start_ui_project, stop_ui_project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",  # the network is closed: no calls home
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
OUTPUT = REPO / "tests" / "output" / "asset-graph.png"
README_IMAGE = REPO / "docs" / "img" / "asset-graph.png"
GROUP_LINEAGE = "/locations/mdp/asset-groups/mdp/lineage"


def _missing(message: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: scripts/ci-services.sh installs it)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiProject]:
    project = start_ui_project(tmp_path_factory.mktemp("ui"))
    yield project
    stop_ui_project()


def test_asset_graph_renders_in_chromium(ui: UiProject) -> None:
    if not CHROMIUM.exists():
        _missing(f"needs Debian's Chromium at {CHROMIUM}: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("needs the playwright Python package (it drives /usr/bin/chromium; no browser download)")

    ui.materialize()  # so the graph shows materialized assets, as a user sees it after `make run`
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mdp-chromium-") as profile, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            # Wide enough that the graph's nodes render their details (latest event, checks, partitions).
            viewport={"width": 1800, "height": 720},
            device_scale_factor=1.5,
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(90_000)
            page.goto(ui.server.url + GROUP_LINEAGE, wait_until="domcontentloaded")
            for name in ASSETS:
                page.get_by_text(name, exact=True).first.wait_for(state="visible")
            # The nodes show the run's check results: 4 checks on validated_samples, 2 on
            # embeddings, 2 on vector_index and 1 on retrieval_eval, all passed.
            page.get_by_text("4 / 4 Passed").first.wait_for(state="visible")
            page.wait_for_load_state("networkidle")
            text = page.inner_text("body")
            page.screenshot(path=str(OUTPUT))
        finally:
            browser.close()

    missing = [name for name in ASSETS if name not in text]
    assert not missing, f"asset names not rendered: {missing}\n{text[:2000]}"
    # embeddings and vector_index have two checks each, retrieval_eval one.
    assert text.count("2 / 2 Passed") == 2, text[:2000]
    assert text.count("1 / 1 Passed") == 1, text[:2000]
    assert OUTPUT.stat().st_size > 10_000
    # The README's picture: written when absent, refreshed on request (every run differs a little,
    # "materialized 3 s ago", so refreshing it always would dirty the work tree).
    if not README_IMAGE.exists() or os.environ.get("MDP_UPDATE_DOCS_IMAGES") == "1":
        README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(OUTPUT, README_IMAGE)
