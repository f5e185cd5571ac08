"""The gallery over plain HTTP, against the real `atelier api`: sign-in through the emulated platforms, who may
see what, CSRF and OAuth state, the safety filter, search and filters, escaping, and secrets kept out of logs."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from markupsafe import escape
from PIL import Image as PILImage

from bots.api.ratelimit import bucket_key
from quotas.admin_bans import BanAdmin
from quotas.errors import UserBanned
from storage.models import Image, Job, User
from storage.preferences import update_preferences
from tests.gallery.conftest import ACCOUNT_IDS, XSS_PROMPT, Rig

pytestmark = pytest.mark.timeout(120)


def _jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


async def test_a_member_sees_the_galleries_of_their_guilds_that_use_atelier_and_no_other(rig: Rig) -> None:
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        done = await rig.sign_in(http, "discord", "alice")
        assert done.status == 303 and done.headers["Location"] == "/gallery/"
        index = await (await http.get(f"{rig.base}/gallery/")).text()
        assert "Lighthouse Club" in index and "Paper Cranes" in index
        assert "Secret Garden" not in index and "Not Atelier" not in index and "1003" not in index
        assert (await http.get(f"{rig.base}/gallery/discord/1001")).status == 200
        assert (await http.get(f"{rig.base}/gallery/discord/1002")).status == 200
        secret_prompt = "a secret garden with a fox"
        secret_image, secret_job = rig.image_ids[secret_prompt], rig.job_ids[secret_prompt]
        for path in (
            "/gallery/discord/2001",  # bob's guild
            "/gallery/discord/1003",  # alice's, but not an Atelier tenant
            f"/gallery/discord/2001/images/{secret_image}",
            f"/gallery/discord/2001/images/{secret_image}/file",
            f"/gallery/discord/1001/images/{secret_image}",  # another tenant's image under her guild's path
            f"/gallery/discord/1001/images/{secret_image}/file",
            f"/gallery/discord/1001/images/{secret_image}/thumb",
            f"/gallery/discord/2001/jobs/{secret_job}",
            f"/gallery/discord/1001/jobs/{secret_job}",
            f"/gallery/discord/1001/jobs/{secret_job}/events",
            f"/gallery/discord/1001/jobs/{secret_job}/preview",
            f"/gallery/discord/2001/jobs/{secret_job}/preview",
            "/gallery/slack/T0GALLERY",
        ):
            response = await http.get(f"{rig.base}{path}", allow_redirects=False)
            assert response.status == 404, path
            assert secret_prompt not in await response.text()
        search = await (await http.get(f"{rig.base}/gallery/discord/1001", params={"q": "fox"})).text()
        assert "a red fox in the snow" in search and secret_prompt not in search


async def test_without_a_session_pages_send_to_sign_in_and_bytes_are_refused(rig: Rig) -> None:
    image = rig.image_ids["a red fox in the snow"]
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        page = await http.get(f"{rig.base}/gallery/discord/1001", allow_redirects=False)
        assert page.status == 303 and page.headers["Location"] == "/gallery/"
        file = await http.get(f"{rig.base}/gallery/discord/1001/images/{image}/file", allow_redirects=False)
        assert file.status == 401
        forged = {"atelier_session": "x" * 43}
        file = await http.get(
            f"{rig.base}/gallery/discord/1001/images/{image}/file", cookies=forged, allow_redirects=False
        )
        assert file.status == 401
        index = await (await http.get(f"{rig.base}/gallery/")).text()
        assert "Sign in with Discord" in index and "Sign in with Slack" in index


async def test_the_session_cookie_is_httponly_samesite_lax_and_sign_out_ends_it(rig: Rig) -> None:
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        done = await rig.sign_in(http, "discord", "alice")
        cookie = done.cookies["atelier_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/gallery"
        session_id = cookie.value
        page = await (await http.get(f"{rig.base}/gallery/discord/1001")).text()
        refused = await http.post(
            f"{rig.base}/gallery/signout", data={"csrf": "wrong"}, allow_redirects=False
        )
        assert refused.status == 403
        assert (await http.get(f"{rig.base}/gallery/discord/1001", allow_redirects=False)).status == 200
        out = await http.post(
            f"{rig.base}/gallery/signout", data={"csrf": _csrf(page)}, allow_redirects=False
        )
        assert out.status == 303
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:  # the old cookie, replayed
        again = await http.get(
            f"{rig.base}/gallery/discord/1001", cookies={"atelier_session": session_id}, allow_redirects=False
        )
        assert again.status == 303


async def test_a_callback_needs_the_state_this_browser_was_given_and_a_code_works_once(rig: Rig) -> None:
    rig.emulator.signed_in["discord"] = "alice"
    async with (
        aiohttp.ClientSession(cookie_jar=_jar()) as victim,
        aiohttp.ClientSession(cookie_jar=_jar()) as attacker,
    ):
        # The attacker starts a sign-in and hands the victim the callback URL with the attacker's code (login CSRF).
        start = await attacker.get(f"{rig.base}/gallery/signin/discord", allow_redirects=False)
        location = start.headers["Location"]
        params = dict(parse_qsl(urlsplit(location).query))
        approved = await attacker.post(location.split("?")[0], data=params, allow_redirects=False)
        callback = approved.headers["Location"]
        victim_answer = await victim.get(callback, allow_redirects=False)
        assert victim_answer.status == 400 and "atelier_session" not in victim_answer.cookies
        # A state that does not match the browser's cookie is refused too, and the genuine one works once.
        tampered = re.sub(r"state=[^&]+", "state=forged", callback)
        assert (await attacker.get(tampered, allow_redirects=False)).status == 400
        first = await attacker.get(callback, allow_redirects=False)
        assert first.status == 303 and "atelier_session" in first.cookies
        replay = await attacker.get(callback, allow_redirects=False)
        assert replay.status == 400


async def test_slack_sign_in_shows_the_one_workspace_signed_in_to(rig: Rig) -> None:
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        done = await rig.sign_in(http, "slack", "dave")
        assert done.status == 303
        index = await (await http.get(f"{rig.base}/gallery/")).text()
        assert "Acme" in index and "Lighthouse Club" not in index
        gallery = await (await http.get(f"{rig.base}/gallery/slack/T0GALLERY")).text()
        assert "an acme rocket" in gallery
        assert (await http.get(f"{rig.base}/gallery/discord/1001", allow_redirects=False)).status == 404
    userinfo = [r for r in rig.emulator.requests if r.path == "/api/openid.connect.userInfo"]
    assert userinfo and userinfo[-1].authorization.startswith("Bearer xoxp-")


async def test_flagged_images_are_withheld_while_the_filter_is_on(rig: Rig) -> None:
    flagged = rig.image_ids["a forbidden orchard"]
    assert (await Image.get(id=flagged)).flagged
    tenant = await rig.tenant("1001")
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        await rig.sign_in(http, "discord", "alice")
        file = f"{rig.base}/gallery/discord/1001/images/{flagged}/file"
        assert (await http.get(file)).status == 404
        page = await (await http.get(f"{rig.base}/gallery/discord/1001/images/{flagged}")).text()
        assert 'id="withheld"' in page and f"/images/{flagged}/file" not in page and "Same again" not in page
        grid = await (await http.get(f"{rig.base}/gallery/discord/1001", params={"q": "orchard"})).text()
        assert "Withheld by the safety filter" in grid
        assert f"/images/{flagged}/file" not in grid and f"/images/{flagged}/thumb" not in grid
        assert (await http.get(f"{rig.base}/gallery/discord/1001/images/{flagged}/thumb")).status == 404
        preview = f"{rig.base}/gallery/discord/1001/jobs/{rig.job_ids['a forbidden orchard']}/preview"
        assert (await http.get(preview)).status == 404
        again = await http.post(
            f"{rig.base}/gallery/discord/1001/jobs/{rig.job_ids['a forbidden orchard']}/again",
            data={"csrf": _csrf(page), "nonce": "n" * 22},
            allow_redirects=False,
        )
        assert again.status == 400
        await update_preferences(tenant, safety=False)
        try:
            served = await http.get(file)
            assert served.status == 200 and served.content_type == "image/png"
            assert (await served.read())[:8] == b"\x89PNG\r\n\x1a\n"
            assert (await http.get(preview)).status == 200
        finally:
            await update_preferences(tenant, safety=True)
        assert (await http.get(file)).status == 404


async def test_search_filters_and_pages(rig: Rig) -> None:
    carol = await User.get(tenant__external_id="1001", external_id=ACCOUNT_IDS["carol"])
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        await rig.sign_in(http, "discord", "alice")

        async def count(**params: str) -> int:
            html = await (await http.get(f"{rig.base}/gallery/discord/1001", params=params)).text()
            return int(re.search(r"(\d+) images?", html).group(1))

        total = await count()
        assert total == 4 + 6 * 4
        assert await count(q="RED FOX") == 1
        assert await count(q="%") == 0  # literal, not a wildcard
        assert await count(q="filler") == 24
        assert await count(model="tiny-strict") == 1
        assert await count(user=str(carol.id)) == 2 + 12
        assert await count(**{"from": "2026-01-01", "to": "2026-01-31"}) == 1  # the lighthouse's day
        today = datetime.now(UTC).date()
        assert await count(**{"from": today.isoformat()}) == total - 1
        assert await count(**{"from": (today + timedelta(days=1)).isoformat()}) == 0
        first = await (await http.get(f"{rig.base}/gallery/discord/1001")).text()
        second = await (await http.get(f"{rig.base}/gallery/discord/1001", params={"page": "2"})).text()
        ids = lambda html: set(re.findall(r"/images/(\d+)\"", html))  # noqa: E731
        assert len(ids(first)) == 24 and len(ids(second)) == total - 24 and not ids(first) & ids(second)
        assert "Page 1 of 2" in first and 'rel="next"' in first and 'rel="prev"' in second
        assert (await http.get(f"{rig.base}/gallery/discord/1001", params={"from": "junk"})).status == 200


async def test_prompts_are_text_never_markup(rig: Rig) -> None:
    image = rig.image_ids[XSS_PROMPT]
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        await rig.sign_in(http, "discord", "alice")
        for path in (f"/gallery/discord/1001/images/{image}", "/gallery/discord/1001"):
            html = await (
                await http.get(
                    f"{rig.base}{path}", params={"q": "<script>"} if "images" not in path else None
                )
            ).text()
            assert "<script>document" not in html and "&lt;script&gt;document.title" in html
            assert "<b>bold</b>" not in html
        response = await http.get(f"{rig.base}/gallery/discord/1001")
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]


async def test_same_again_needs_the_forms_csrf_token_and_makes_one_job_per_form(rig: Rig) -> None:
    source = rig.job_ids["a paper crane on a desk"]
    image = rig.image_ids["a paper crane on a desk"]
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        await rig.sign_in(http, "discord", "alice")
        page = await (await http.get(f"{rig.base}/gallery/discord/1002/images/{image}")).text()
        nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)
        url = f"{rig.base}/gallery/discord/1002/jobs/{source}/again"
        before = await Job.all().count()
        refused = await http.post(url, data={"nonce": nonce}, allow_redirects=False)
        assert refused.status == 403
        forged = await http.post(url, data={"nonce": nonce, "csrf": "x" * 43}, allow_redirects=False)
        assert forged.status == 403
        assert await Job.all().count() == before
        first = await http.post(url, data={"nonce": nonce, "csrf": _csrf(page)}, allow_redirects=False)
        twice = await http.post(url, data={"nonce": nonce, "csrf": _csrf(page)}, allow_redirects=False)
        assert first.status == twice.status == 303 and first.headers["Location"] == twice.headers["Location"]
        new_id = first.headers["Location"].rsplit("/", 1)[1]
        assert await Job.all().count() == before + 1
        new = await Job.get(id=new_id).select_related("tenant", "user")
        original = await Job.get(id=source)
        assert new.spec == original.spec and new.id != source
        assert (new.tenant.external_id, new.user.external_id) == ("1002", ACCOUNT_IDS["alice"])
        await rig.run_jobs()
        assert (await Job.get(id=new_id)).status == "succeeded"
        preview = await http.get(f"{rig.base}/gallery/discord/1002/jobs/{new_id}/preview")  # the last step's
        assert preview.status == 200 and preview.content_type == "image/jpeg"
        assert (await preview.read())[:2] == b"\xff\xd8"


async def test_client_secrets_stay_out_of_the_logs_and_go_only_to_the_token_endpoints(rig: Rig) -> None:
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        await rig.sign_in(http, "discord", "alice")
        await rig.sign_in(http, "slack", "dave")
    assert rig.client_secret not in rig.api_log.read_text()
    carrying = {
        r.path
        for r in rig.emulator.requests
        if rig.client_secret in str(r.form) + str(r.query) + r.authorization
    }
    assert carrying == {"/api/v10/oauth2/token", "/api/openid.connect.token"}
    authorize = [r for r in rig.emulator.requests if r.path == "/oauth2/authorize" and r.method == "GET"]
    assert (
        authorize[-1].query["scope"] == "identify guilds"
        and authorize[-1].query["client_id"] == "gallery-test-client"
    )


async def test_odd_values_in_queries_and_paths_are_ignored_or_not_found_never_errors(rig: Rig) -> None:
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        await rig.sign_in(http, "discord", "alice")
        gallery = f"{rig.base}/gallery/discord/1001"
        for params in (
            {"page": "²"},
            {"user": "²"},
            {"page": "9" * 40},
            {"from": "9999-12-31", "to": "9999-12-31"},
            {"from": "0001-01-01", "to": "0001-01-01"},
            {"q": "fox\x00", "model": "\x00tiny"},
            {"q": "x" * 5000},
            {"from": "2026-02-30"},
        ):
            response = await http.get(gallery, params=params)
            assert response.status == 200, (params, await response.text())
        for path in (
            "/images/²",
            f"/images/{'9' * 40}",
            "/images/-1/file",
            "/jobs/j%00",
            "/jobs/..%2F..",
            "/nope",
        ):
            response = await http.get(f"{gallery}{path}", allow_redirects=False)
            assert response.status == 404, path
            assert response.content_type == "text/html"


async def test_sessions_are_shared_by_api_processes_and_sign_ins_are_rate_limited(rig: Rig) -> None:
    slow = {"ATELIER_API_ADDRESS_BURST": "3", "ATELIER_API_ADDRESS_RATE": "0.01"}
    async with (
        rig.another_api(**slow, ATELIER_API_TRUSTED_PROXIES="127.0.0.1") as other,
        aiohttp.ClientSession(cookie_jar=_jar()) as http,
    ):
        await rig.sign_in(http, "discord", "alice")  # on the rig's process
        page = await http.get(f"{other}/gallery/discord/1001", allow_redirects=False)
        assert page.status == 200  # the same cookie, on another process
        assert (await http.get(f"{other}/gallery", allow_redirects=False)).headers["Location"] == "/gallery/"
        out = await http.post(
            f"{other}/gallery/signout", data={"csrf": _csrf(await page.text())}, allow_redirects=False
        )
        assert out.status == 303
        assert (await http.get(f"{rig.base}/gallery/discord/1001", allow_redirects=False)).status == 303

        async def start(client: str) -> aiohttp.ClientResponse:  # through a trusted proxy, for `client`
            headers = {"X-Forwarded-For": client}
            return await http.get(f"{other}/gallery/signin/discord", headers=headers, allow_redirects=False)

        try:
            starts = [await start("203.0.113.7") for _ in range(4)]
            assert [r.status for r in starts] == [302, 302, 302, 429]
            assert int(starts[-1].headers["Retry-After"]) > 0
            assert (await start("203.0.113.8")).status == 302  # another client behind the same proxy
        finally:
            for client in ("203.0.113.7", "203.0.113.8"):
                await rig.runtime.redis.delete(bucket_key("gallery-sign-in", client))


async def test_tiles_are_thumbnails_made_once_and_kept_in_the_blob_store(rig: Rig) -> None:
    wide = await Image.get(id=rig.image_ids["a wide harbour panorama"])
    assert (wide.width, wide.height) == (512, 384)
    stored = rig.root / "blobs" / "thumbs" / f"{wide.sha256}-320.jpg"
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        await rig.sign_in(http, "discord", "alice")
        grid = await (await http.get(f"{rig.base}/gallery/discord/1002")).text()
        assert f"/images/{wide.id}/thumb" in grid and f"/images/{wide.id}/file" not in grid
        first = await http.get(f"{rig.base}/gallery/discord/1002/images/{wide.id}/thumb")
        assert first.status == 200 and first.content_type == "image/jpeg"
        with PILImage.open(io.BytesIO(await first.read())) as thumb:
            assert thumb.size == (320, 240)
        assert stored.exists()
        again = await http.get(f"{rig.base}/gallery/discord/1002/images/{wide.id}/thumb")
        assert await again.read() == stored.read_bytes()


async def test_same_again_is_refused_for_a_banned_member_in_the_words_chat_uses_and_nothing_is_queued(
    rig: Rig,
) -> None:
    source = rig.job_ids["a paper crane on a desk"]
    image = rig.image_ids["a paper crane on a desk"]
    bans = BanAdmin()
    await bans.ban("discord:1002", ACCOUNT_IDS["alice"], reason="testing")
    try:
        async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
            await rig.sign_in(http, "discord", "alice")
            page = await (await http.get(f"{rig.base}/gallery/discord/1002/images/{image}")).text()
            nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)
            before = await Job.all().count()
            refused = await http.post(
                f"{rig.base}/gallery/discord/1002/jobs/{source}/again",
                data={"nonce": nonce, "csrf": _csrf(page)},
                allow_redirects=False,
            )
            assert refused.status == 403 and str(escape(str(UserBanned()))) in await refused.text()
            assert await Job.all().count() == before
    finally:
        await bans.unban("discord:1002", ACCOUNT_IDS["alice"])
