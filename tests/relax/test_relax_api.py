"""`POST /v1/images` takes a `lane` (auto, fast, relax), on a real `atelier api` process: a tenant whose fast
budget is spent is queued in the relax lane and the job says so; `fast` is refused with quota_exceeded and an
unknown lane names the field; nothing is queued for a refusal. (No worker: the jobs stay queued.)"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from redis import Redis

from tests.support import api_process, free_port, run_atelier


def _post(url: str, key: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/v1/images",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_api_takes_a_lane_and_refuses_fast_past_the_budget(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "ATELIER_API_HOST": "127.0.0.1", "ATELIER_API_PORT": str(free_port())}
    created = run_atelier("admin", "apikey", "create", "cli:patient", "--name", "t", cwd=tmp_path, env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    queue = Redis.from_url(env["ATELIER_REDIS_URL"])
    prompt = {"prompt": "a red fox", "steps": 2, "seed": 1}
    with api_process(env, tmp_path) as url:
        status, body = _post(url, key, {**prompt, "lane": "fast"})
        assert (status, body["error"]["code"]) == (429, "quota_exceeded"), body
        status, body = _post(url, key, {**prompt, "lane": "slow"})
        assert status == 422 and body["error"]["field"] == "lane", body
        assert queue.zcard("atelier:queue") == 0  # nothing queued for either

        status, body = _post(url, key, prompt)  # auto: the budget is spent, the tier allows relax
        assert status == 202, body
        assert body["lane"] == "relax"
        assert queue.zscore("atelier:queue", body["id"]) is not None
