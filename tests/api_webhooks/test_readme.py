"""The README's few lines that check a webhook's signature work on what Atelier sends, and refuse what it did
not: the snippet is read from the README and run."""

from __future__ import annotations

import re
import time
from pathlib import Path

from jobs import webhooks

README = Path(__file__).parents[2] / "README.md"


def readme_verify():
    text = README.read_text()
    section = text[text.index("### Webhooks") :]
    snippet = re.search(r"\*\*Checking the signature\*\*.*?```python\n(.*?)```", section, re.S).group(1)
    assert len(snippet.splitlines()) <= 8  # "a few lines"
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    return scope["verify"]


def test_the_readme_signature_check_accepts_atelier_signatures_and_refuses_others() -> None:
    verify = readme_verify()
    body = b'{"id":"wh_1","event":"job.succeeded","data":{"id":"j1"}}'
    header = webhooks.sign("whsec_secret", body)
    assert verify("whsec_secret", header, body)
    assert not verify("whsec_other", header, body)
    assert not verify("whsec_secret", header, body.replace(b"j1", b"j2"))
    stale = webhooks.sign("whsec_secret", body, timestamp=int(time.time()) - 600)
    assert not verify("whsec_secret", stale, body)
    # and both checks agree
    assert webhooks.verify("whsec_secret", header, body) and not webhooks.verify("whsec_secret", stale, body)
