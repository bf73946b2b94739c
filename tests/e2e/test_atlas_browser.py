"""The atlas in a real browser: Chromium (the system's package, driven by Playwright)
opens the site from file://, follows every link, checks every picture loads and that no
console error appears. The browser must be there (the README's test setup and .ci/run
install it); FEATURESCOPE_SKIP_BROWSER=1 skips this on purpose, never silently."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urldefrag

import pytest

import featurescope as fs
from featurescope.core.atlas.build import build_atlas
from featurescope.core.atlas.units import AtlasSettings
from featurescope.core.optvis.cache import OptvisCache

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("FEATURESCOPE_SKIP_BROWSER") == "1":
        pytest.skip("FEATURESCOPE_SKIP_BROWSER=1: the atlas browser test was skipped on purpose")
    pytest.fail("No Chromium found for the atlas browser test: install it (apt-get install chromium) "
                "or set FEATURESCOPE_SKIP_BROWSER=1 to skip it on purpose.")


@pytest.fixture(scope="module")
def site(tmp_path_factory, concept_folder):
    root = tmp_path_factory.mktemp("atlas")
    model = fs.load_model("resnet18", weights="none", device="cpu", input_size=64)
    folder = concept_folder(root / "images", per_kind=2)
    build_atlas(model, root / "site", images=folder, layers=["conv1", "layer1.0.conv2"], channels="0-3",
                settings=AtlasSettings(steps=2, size=32, top=2), workers=0, cache=OptvisCache(root / "cache"))
    # the site must not need the photo folder: it is opened as if from a USB stick
    shutil.rmtree(folder)
    return root / "site"


def test_every_page_opens_every_link_resolves_and_every_picture_loads(site):
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = find_browser()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()
        errors = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("requestfailed", lambda request: errors.append(f"failed: {request.url}"))
        start = (site / "index.html").as_uri()
        seen, queue = set(), [start]
        while queue:
            url = queue.pop()
            if url in seen:
                continue
            seen.add(url)
            page.goto(url)
            page.wait_for_load_state("load")
            # lazy pictures load once scrolled into view: bring each one in
            for image in page.locator("img[src]").all():
                image.scroll_into_view_if_needed()
            page.wait_for_function("Array.from(document.images).every(i => i.complete)")
            broken = page.evaluate("Array.from(document.images).filter(i => i.getAttribute('src') && "
                                   "i.naturalWidth === 0).map(i => i.src)")
            assert not broken, f"{url}: pictures that did not load: {broken}"
            for link in page.evaluate("Array.from(document.links).map(a => a.href)"):
                target = urldefrag(link).url
                assert target.startswith("file://"), f"{url} links outside the site: {link}"
                path = Path(target[len("file://"):])
                assert path.exists(), f"{url} links to a missing file: {link}"
                if path.suffix == ".html":
                    queue.append(target)
        # the filter box hides the tiles that do not match
        page.goto((site / "conv1" / "index.html").as_uri())
        page.fill("#filter", "3")
        visible = page.evaluate("Array.from(document.querySelectorAll('.tile')).filter(t => "
                                "t.style.display !== 'none').map(t => t.dataset.channel)")
        assert visible == ["3"]
        browser.close()
    pages = {Path(u[len("file://"):]).relative_to(site).as_posix() for u in seen}
    assert {"index.html", "conv1/index.html", "conv1/3.html", "layer1.0.conv2/0.html"} <= pages
    assert len(pages) == 1 + 2 * (1 + 4)
    assert not errors, errors
