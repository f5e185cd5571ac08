"""Settings: the README documents every variable, secrets never leak, and `_FILE` variants work."""

from __future__ import annotations

import re
from pathlib import Path

from atelier.settings import Settings

README = Path(__file__).parents[1] / "README.md"


def test_the_readme_lists_every_setting_and_no_other() -> None:
    documented = set(re.findall(r"`(ATELIER_[A-Z0-9_]+)`", README.read_text()))
    fields = {f"ATELIER_{name.upper()}" for name in Settings.model_fields}
    secrets = {f"{v}_FILE" for v in fields if any(s in v for s in ("TOKEN", "SECRET", "ACCESS_KEY"))}
    assert fields - documented == set(), "settings missing from the README"
    harness = {v for v in documented if v.startswith("ATELIER_TEST_")}  # the test suite's, not Atelier's
    assert documented - fields - secrets - harness == set(), "the README documents settings that do not exist"


def test_secrets_come_from_files_and_never_show_in_reprs(tmp_path: Path, monkeypatch) -> None:
    secret_file = tmp_path / "s3-secret"
    secret_file.write_text("very-secret-value\n")
    monkeypatch.setenv("ATELIER_S3_SECRET_ACCESS_KEY_FILE", str(secret_file))
    settings = Settings()
    assert settings.secret("s3_secret_access_key") == "very-secret-value"
    assert "very-secret-value" not in repr(settings) and "very-secret-value" not in str(settings.model_dump())
