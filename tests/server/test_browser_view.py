"""The web page in a real browser (Debian's Chromium driven by Playwright): the live view plays,
the streams table fills, and streams are added and removed from the page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from server_tools import PATTERN_URI, Serve, tiled_config, wait_for

from panoptes.core.streams import StreamState

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The picture the <img> shows now, drawn into a canvas: its size and a sample of its pixels.
PIXELS_JS = """(image) => {
    const canvas = document.createElement("canvas");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const sample = [];
    for (let i = 0; i < data.length; i += 4 * 97) sample.push(data[i], data[i + 1], data[i + 2]);
    return {width: canvas.width, height: canvas.height, sample: sample};
}"""


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def test_page_plays_the_view_and_adds_and_removes_streams(browser: Browser, serve: Serve) -> None:
    pipeline, server = serve(tiled_config("a", "b"))
    page = browser.new_page()
    try:
        page.goto(server.url)
        rows = page.locator("#streams tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0).locator("td").nth(1)).to_have_text("a")
        expect(rows.nth(1).locator("td").nth(3)).to_have_text("playing")

        video = page.locator("#video")
        wait_for(lambda: video.evaluate("(image) => image.naturalWidth") > 0, "the first picture")
        first = video.evaluate(PIXELS_JS)
        assert (first["width"], first["height"]) == (320, 180)
        # Pictures come several times a second, but on a loaded machine a second can pass
        # without a new one: the deadline is generous.
        wait_for(
            lambda: video.evaluate(PIXELS_JS)["sample"] != first["sample"],
            "the live view to advance",
            timeout_s=60,
        )

        page.fill("input[name=uri]", "foo://camera")
        page.click("#add-stream button[type=submit]")
        expect(page.locator("#form-error")).to_contain_text("unknown URI scheme")

        page.fill("input[name=uri]", PATTERN_URI)
        page.fill("input[name=name]", "from the page")
        page.click("#add-stream button[type=submit]")
        added = rows.filter(has_text="from the page")
        expect(added).to_have_count(1)
        source_id = int(added.get_attribute("data-source-id") or -1)
        names = {s.source_id: s.name for s in pipeline.streams()}
        assert names.get(source_id) == "from the page"
        expect(added.locator("td").nth(3)).to_have_text("playing")

        page.locator('#streams tbody tr[data-source-id="1"] button.remove').click()
        expect(rows).to_have_count(2)
        expect(page.locator('#streams tbody tr[data-source-id="1"]')).to_have_count(0)
        live = {s.name for s in pipeline.streams() if s.state is not StreamState.REMOVED}
        assert live == {"a", "from the page"}
    finally:
        page.close()
