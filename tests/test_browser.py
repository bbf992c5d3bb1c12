"""The draw-a-digit page in a real headless browser: Debian's Chromium driven by Playwright.

Skipped when Chromium is missing, unless the environment variable CI is set: there it must
be installed (Debian package `chromium`), so a missing browser fails.
Playwright's own browser download is never used.
"""

import os
import shutil
import threading
from pathlib import Path

import pytest

from mnistlab.serve import make_server

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("MNISTLAB_CHROMIUM", "/usr/bin/chromium")
# Without the networking flags Chromium tries to reach Google's services at start-up, which
# a closed network refuses; as root it needs --no-sandbox.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    _require(Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is not None,
             f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "Playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server_url(shapes_run):
    server = make_server(shapes_run, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def page(browser, server_url):
    context = browser.new_context(viewport={"width": 1000, "height": 620})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server_url)
    page.wait_for_selector("body[data-ready=true]", timeout=10_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def preview_ink(page) -> int:
    """The sum of the 28x28 preview's grey levels, read back from its canvas."""
    return page.evaluate("""() => {
        const data = document.getElementById("preview").getContext("2d")
            .getImageData(0, 0, 28, 28).data;
        let total = 0;
        for (let k = 0; k < data.length; k += 4) total += data[k];
        return total;
    }""")


def bar_values(page) -> list[str]:
    return page.locator("#bars .value").all_inner_texts()


def test_drawing_a_one_predicts_it_while_drawing_and_clear_resets(page):
    assert page.locator("#bars li .name").all_inner_texts()[:2] == ["zero", "one"]
    assert preview_ink(page) == 0
    box = page.locator("#pad").bounding_box()
    x = box["x"] + box["width"] / 2
    top, bottom = box["y"] + box["height"] * 0.15, box["y"] + box["height"] * 0.85

    # A vertical stroke, drawn slowly; the answer must appear before the button is released.
    page.mouse.move(x, top)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(x, top + (bottom - top) * step / 20)
        page.wait_for_timeout(25)
    page.wait_for_selector("#answer[data-label]", timeout=10_000)
    page.mouse.up()
    page.wait_for_function(
        "() => document.getElementById('answer').dataset.label === 'one'", timeout=10_000)

    assert preview_ink(page) > 0
    values = [float(text.rstrip("%")) for text in bar_values(page)]
    assert sum(values) == pytest.approx(100, abs=1)
    assert page.locator("#bars li.best .name").inner_text() == "one"
    best_bar = page.locator("#bars li.best .fill").bounding_box()
    track = page.locator("#bars li.best .track").bounding_box()
    assert best_bar["width"] == pytest.approx(track["width"] * values[1] / 100, abs=3)

    page.click("#clear")
    assert page.locator("#answer").inner_text() == ""
    assert preview_ink(page) == 0
    assert set(bar_values(page)) == {"–"}
    # A late answer to a request sent before the clear must not bring the drawing back.
    page.wait_for_timeout(500)
    assert preview_ink(page) == 0 and page.locator("#answer").inner_text() == ""


def test_a_finger_draws_too(browser, server_url):
    """Touch input through Pointer Events: a horizontal swipe gives the horizontal bar."""
    context = browser.new_context(viewport={"width": 420, "height": 800}, has_touch=True,
                                  is_mobile=True)
    page = context.new_page()
    try:
        page.goto(server_url)
        page.wait_for_selector("body[data-ready=true]", timeout=10_000)
        box = page.locator("#pad").bounding_box()
        y = box["y"] + box["height"] / 2
        left, right = box["x"] + box["width"] * 0.15, box["x"] + box["width"] * 0.85
        cdp = context.new_cdp_session(page)
        steps = [left + (right - left) * step / 15 for step in range(16)]
        cdp.send("Input.dispatchTouchEvent",
                 {"type": "touchStart", "touchPoints": [{"x": steps[0], "y": y}]})
        for x in steps[1:]:
            cdp.send("Input.dispatchTouchEvent",
                     {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        page.wait_for_function(
            "() => document.getElementById('answer').dataset.label === 'three'", timeout=10_000)
        assert preview_ink(page) > 0
    finally:
        context.close()


def test_on_a_phone_the_cards_fill_the_width_and_keep_their_headings(browser, server_url):
    """390 px wide (an iPhone 12 to 15): no sideways scrolling, one column of cards of equal
    width, the prediction right under the pad with its heading, and a favicon."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True,
                                  is_mobile=True, device_scale_factor=3)
    page = context.new_page()
    try:
        page.goto(server_url)
        page.wait_for_selector("body[data-ready=true]", timeout=10_000)
        layout = page.evaluate("""() => ({
            scrollWidth: document.documentElement.scrollWidth,
            innerWidth: window.innerWidth,
            cards: [...document.querySelectorAll("main > section")].map((card) => {
                const box = card.getBoundingClientRect();
                return {id: card.id, left: box.left, right: box.right, top: box.top,
                        width: box.width};
            }),
            headings: [...document.querySelectorAll("main h2")].map((heading) => ({
                text: heading.textContent, visible: heading.getBoundingClientRect().height > 0,
            })),
            icon: document.querySelector("link[rel=icon]").href,
        })""")
        assert layout["scrollWidth"] <= layout["innerWidth"] == 390
        widths = [card["width"] for card in layout["cards"]]
        assert max(widths) - min(widths) < 1 and min(widths) > 300
        assert all(card["left"] >= 0 and card["right"] <= 390 for card in layout["cards"])
        order = [card["id"] for card in sorted(layout["cards"], key=lambda card: card["top"])]
        assert order[1] == "prediction-section"
        assert {heading["text"] for heading in layout["headings"] if heading["visible"]} == {
            "Your drawing", "What the model sees", "Prediction"}
        assert page.request.get(layout["icon"]).headers["content-type"] == "image/svg+xml"
    finally:
        context.close()
