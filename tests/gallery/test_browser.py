"""The gallery in a real browser (the issue's Done-when): Debian's Chromium, headless, driven by Playwright,
against the real `atelier api`, PostgreSQL, Redis and images made by a real worker on the tiny models.

alice signs in through the emulated Discord, sees her two Atelier guilds and not bob's, searches by prompt, opens
an image page, finds the flagged image withheld (and its bytes refused), presses "same again", and watches the
new job's progress and previews arrive over SSE until its image is on the page; bob's guild answers 404; after
signing out, the gallery sends her to sign in. Screenshots go to the
repository's ignored `out/` folder; their paths are printed.

Chromium must be installed (`apt-get install chromium`; `.ci/run` installs it): without it the test fails.
Playwright never downloads a browser here; it is pointed at /usr/bin/chromium.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright

from storage.models import Job
from storage.quota_models import LedgerKind, QuotaLedger
from tests.gallery.conftest import ACCOUNT_IDS, Rig

pytestmark = pytest.mark.timeout(120)

CHROMIUM = Path("/usr/bin/chromium")
# No background traffic to Google's hosts (this machine has no internet), no first-run or sync prompts.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Test instrumentation in the page: every event the job page's EventSource receives, and the width of every
# preview it shows, is kept in sessionStorage, which survives the reload the page does when the job ends.
RECORD_EVENTS = """
const Original = window.EventSource;
window.EventSource = function (url, options) {
  const source = new Original(url, options);
  for (const name of ["queued", "progress", "end"]) {
    source.addEventListener(name, (event) => {
      const log = JSON.parse(sessionStorage.getItem("events") || "[]");
      log.push([name, JSON.parse(event.data)]);
      sessionStorage.setItem("events", JSON.stringify(log));
    });
  }
  return source;
};
document.addEventListener("load", (event) => {
  if (event.target.id !== "preview") return;
  const sizes = JSON.parse(sessionStorage.getItem("previews") || "[]");
  sizes.push(event.target.naturalWidth);
  sessionStorage.setItem("previews", JSON.stringify(sizes));
}, true);
"""


async def _tiles(page: Page) -> list[str]:
    return [text.strip() for text in await page.locator("ul.grid li .caption").all_inner_texts()]


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium; its absence fails the test (CI installs it), never skips it."""
    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install -y chromium (.ci/run does)"
    return str(CHROMIUM)


def _keep(screenshots: Path, out: Path) -> None:
    for shot in sorted(screenshots.glob("*.png")):
        shutil.copyfile(shot, out / shot.name)
        print(f"screenshot: {out / shot.name}")


async def test_a_member_signs_in_searches_opens_an_image_and_makes_it_again(
    rig: Rig, chromium: str, tmp_path: Path
) -> None:
    rig.emulator.signed_in["discord"] = "alice"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        try:
            context = await browser.new_context(viewport={"width": 1100, "height": 900})
            await context.add_init_script(RECORD_EVENTS)
            page = await context.new_page()
            await page.goto(f"{rig.base}/gallery/")
            await page.click("#signin-discord")
            await page.click("#authorize")  # the emulated Discord's consent screen
            await page.wait_for_url(f"{rig.base}/gallery/")
            galleries = await page.locator("ul.galleries").inner_text()
            assert "Lighthouse Club" in galleries and "Paper Cranes" in galleries
            assert "Secret Garden" not in galleries and "Not Atelier" not in galleries

            await page.click("text=Lighthouse Club")
            await page.fill("input[name=q]", "FOX")
            await page.press("input[name=q]", "Enter")
            await page.wait_for_url("**q=FOX**")
            tiles = await _tiles(page)
            assert sorted(tiles) == sorted(["a red fox in the snow", rig.xss_prompt]), tiles
            assert await page.title() != "pwned"  # the prompt's <script> is text

            await page.click("text=a red fox in the snow")
            await page.wait_for_selector("#picture")
            assert await page.locator("#picture").evaluate("img => img.complete && img.naturalWidth") == 64
            details = await page.locator("dl.details").inner_text()
            for shown in ("a red fox in the snow", "tiny", "64×64", "alice"):
                assert shown in details, details
            image_page = page.url
            await page.screenshot(path=str(tmp_path / "gallery-image.png"), full_page=True)

            await page.goto(f"{rig.base}/gallery/discord/1001?q=orchard")
            assert await _tiles(page) == ["a forbidden orchard"]
            assert await page.locator("ul.grid img").count() == 0
            assert await page.locator("ul.grid .placeholder").inner_text() == "Withheld by the safety filter"
            flagged = rig.image_ids["a forbidden orchard"]
            refused = await page.request.get(f"{rig.base}/gallery/discord/1001/images/{flagged}/file")
            assert refused.status == 404

            await page.goto(image_page)
            previews: list[str] = []
            page.on(
                "request",
                lambda request: previews.append(request.url) if "/preview?" in request.url else None,
            )
            await page.click("#again button")
            await page.wait_for_url("**/jobs/**")
            new_id = page.url.rsplit("/", 1)[1]
            assert new_id != rig.job_ids["a red fox in the snow"]
            assert await page.locator("#job").get_attribute("data-status") == "queued"
            await rig.run_jobs()
            await page.wait_for_function(
                "document.getElementById('status')?.textContent === 'succeeded'", timeout=30_000
            )
            await page.wait_for_function("document.querySelector('#results img')?.naturalWidth === 64")
            seen = json.loads(await page.evaluate("sessionStorage.getItem('events')"))
            steps = [data["step"] for name, data in seen if name == "progress"]
            assert steps and steps[-1] == 4 and seen[-1] == ["end", {"status": "succeeded"}], seen
            assert f"/jobs/{new_id}/preview?step=4" in " ".join(previews), previews  # fetched at each event
            shown = json.loads(await page.evaluate("sessionStorage.getItem('previews')") or "[]")
            assert shown and all(width > 0 for width in shown), shown
            await page.screenshot(path=str(tmp_path / "gallery-job.png"), full_page=True)

            await page.goto(f"{rig.base}/gallery/discord/1001")
            assert (await _tiles(page))[0] == "a red fox in the snow"  # the new image comes first
            await page.screenshot(path=str(tmp_path / "gallery.png"), full_page=True)

            response = await page.goto(f"{rig.base}/gallery/discord/2001")
            assert response.status == 404 and "Secret Garden" not in await page.content()

            await page.goto(f"{rig.base}/gallery/")
            await page.click("text=Sign out")
            await page.wait_for_selector("#signin-discord")
            await page.goto(f"{rig.base}/gallery/discord/1001")
            assert page.url == f"{rig.base}/gallery/" and await page.locator("ul.grid").count() == 0
        finally:
            await browser.close()

    new = await Job.get(id=new_id).select_related("tenant", "user")
    assert (new.tenant.external_id, new.user.external_id, new.status) == (
        "1001",
        ACCOUNT_IDS["alice"],
        "succeeded",
    )
    kinds = set(await QuotaLedger.filter(job_id=new_id).values_list("kind", flat=True))
    assert kinds == {LedgerKind.RESERVE, LedgerKind.SETTLE}, kinds
    _keep(tmp_path, rig.out)
