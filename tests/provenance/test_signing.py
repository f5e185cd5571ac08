"""The operator's signing credentials (jobs.signing) and what a check of a manifest catches (jobs.provenance),
in process: configured files, the local CA made once, refusals of half a configuration, edited pixels."""

from __future__ import annotations

import io

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from atelier.settings import Settings
from engine.output import assemble_png, png_bytes, png_chunks
from jobs import provenance, recipe
from jobs.signing import load_credentials, load_trust

TEXT = recipe.build(
    "imagine",
    {"prompt": "a red fox", "model": "tiny", "guidance": 5.0, "seed": 3, "count": 1},
    index=0, seed=3, models=[], loras=[],
)  # fmt: skip


def _signed(credentials: provenance.Credentials, colour: str = "teal") -> bytes:
    bare = png_bytes(Image.new("RGB", (32, 32), colour), {recipe.RECIPE_KEY: TEXT})
    return provenance.sign_png(bare, TEXT, credentials, "test.png")


def test_the_local_ca_is_made_once_and_shared(tmp_path) -> None:
    first = load_credentials(key_file=None, cert_file=None, trust_file=None, local_dir=tmp_path / "c2pa")
    again = load_credentials(key_file=None, cert_file=None, trust_file=None, local_dir=tmp_path / "c2pa")
    assert first == again and first.alg == "es256"
    assert b"PRIVATE KEY" not in repr(first).encode()  # the key never shows in a repr (or a log of one)
    assert load_trust(cert_file=None, trust_file=None, local_dir=tmp_path / "c2pa") == first.trust_pem
    assert load_trust(cert_file=None, trust_file=None, local_dir=tmp_path / "none") is None


def test_configured_key_and_chain_sign_and_their_ca_is_trusted(tmp_path) -> None:
    made = load_credentials(key_file=None, cert_file=None, trust_file=None, local_dir=tmp_path / "operator")
    (tmp_path / "key.pem").write_bytes(made.key_pem)
    (tmp_path / "chain.pem").write_bytes(made.chain_pem)
    given = load_credentials(
        key_file=tmp_path / "key.pem",
        cert_file=tmp_path / "chain.pem",
        trust_file=None,
        local_dir=tmp_path / "x",
    )
    assert not (tmp_path / "x").exists()  # nothing made when a key is configured
    data = _signed(given)
    verdict = provenance.check(data, recipe.read_text(data), given.trust_pem)
    assert verdict.ok() and verdict.trusted and "Atelier operator" in verdict.signer
    # Another installation's CA does not vouch for it.
    other = load_credentials(key_file=None, cert_file=None, trust_file=None, local_dir=tmp_path / "other")
    stranger = provenance.check(data, recipe.read_text(data), other.trust_pem)
    assert stranger.signature_valid and not stranger.trusted and not stranger.ok()
    assert stranger.ok(any_signer=True)


def test_half_a_configuration_or_a_key_c2pa_cannot_use_is_refused(tmp_path, monkeypatch) -> None:
    (tmp_path / "key.pem").write_bytes(
        ec.generate_private_key(ec.SECP256K1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    chain = load_credentials(
        key_file=None, cert_file=None, trust_file=None, local_dir=tmp_path / "c2pa"
    ).chain_pem
    (tmp_path / "chain.pem").write_bytes(chain)
    with pytest.raises(ValueError, match="not secp256k1"):
        load_credentials(key_file=tmp_path / "key.pem", cert_file=tmp_path / "chain.pem", trust_file=None,
                         local_dir=tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="no PEM certificate chain"):
        load_credentials(key_file=tmp_path / "c2pa" / "operator.key", cert_file=tmp_path / "key.pem",
                         trust_file=None, local_dir=tmp_path)  # fmt: skip
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ValueError, match="no unencrypted PEM private key"):
        load_credentials(key_file=tmp_path / "junk.pem", cert_file=tmp_path / "junk.pem", trust_file=None,
                         local_dir=tmp_path)  # fmt: skip
    monkeypatch.setenv("ATELIER_C2PA_KEY_FILE", str(tmp_path / "key.pem"))
    with pytest.raises(ValueError, match="set both ATELIER_C2PA_KEY_FILE and ATELIER_C2PA_CERT_FILE"):
        Settings()


def test_edited_pixels_fail_the_check_even_with_the_recipe_intact(tmp_path) -> None:
    credentials = load_credentials(key_file=None, cert_file=None, trust_file=None, local_dir=tmp_path)
    data = _signed(credentials)
    with Image.open(io.BytesIO(data)) as image:
        chunks_before = image.text
    # The same recipe and manifest over other pixels: the IDAT of another image of the same size and mode.
    other = _signed(credentials, colour="tomato")
    swapped = assemble_png(
        [
            (k, d) if k != b"IDAT" else next(x for x in png_chunks(other) if x[0] == b"IDAT")
            for k, d in png_chunks(data)
        ]
    )
    assert Image.open(io.BytesIO(swapped)).text == chunks_before
    verdict = provenance.check(swapped, recipe.read_text(swapped), credentials.trust_pem)
    assert not verdict.ok() and "changed after signing" in " ".join(verdict.problems)
