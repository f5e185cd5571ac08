"""Content Credentials (C2PA) on every generated image: a manifest signed with the operator's key that marks the
image as made by a generative model (`c2pa.created`, digital source type trainedAlgorithmicMedia, what the EU AI
Act's Article 50 asks of generators) and binds the recipe (jobs.recipe) by its SHA-256.

The manifest's data hash covers the whole PNG, the recipe's text chunk included, so an edited recipe (or edited
pixels) fails the check; the recipe's own hash in the manifest says which recipe was signed. A manifest holds a
random instance id and an ECDSA signature, so two signings of the same pixels and recipe differ in their bytes:
what a replay reproduces exactly is the decoded pixels (and the recipe), see `jobs.recipe`.

Keys: `jobs.signing` loads the operator's key and certificate chain (or makes a local CA and operator
certificate on first use); c2pa refuses a self-signed leaf certificate, so the chain always has a CA above it.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

RECIPE_ASSERTION = "org.atelier.recipe"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
_NO_THUMBNAIL = {"builder": {"thumbnail": {"enabled": False}}}  # a JPEG thumbnail would add ~30 kB per image


@dataclass(frozen=True)
class Credentials:
    """The operator's signing key and certificate chain (PEM, leaf first), and the CA certificates a check on
    this installation trusts (PEM; by default the chain's last certificate). `repr` never shows the key."""

    chain_pem: bytes
    key_pem: bytes = field(repr=False)
    trust_pem: bytes
    alg: str = "es256"


def sign_png(png: bytes, recipe_text: str, credentials: Credentials, title: str) -> bytes:
    """`png` (already carrying the recipe) with a C2PA manifest embedded: created by a trained model, the
    recipe's hash bound in, signed with `credentials`."""
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": "Atelier", "version": _version()}],
        "title": title,
        "format": "image/png",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                            "softwareAgent": {"name": "Atelier", "version": _version()},
                        }
                    ]
                },
            },
            {"label": RECIPE_ASSERTION, "data": {"sha256": recipe_hash(recipe_text)}},
        ],
    }
    info = c2pa.C2paSignerInfo(credentials.alg, credentials.chain_pem, credentials.key_pem, None)
    signer = c2pa.Signer.from_info(info)
    out = io.BytesIO()
    try:
        with c2pa.Builder(manifest, context=c2pa.Context.from_dict(_NO_THUMBNAIL)) as builder:
            builder.sign(signer, "image/png", io.BytesIO(png), out)
    finally:
        signer.close()
    return out.getvalue()


def recipe_hash(recipe_text: str) -> str:
    return hashlib.sha256(recipe_text.encode()).hexdigest()


@dataclass
class Verdict:
    """What `check` found. `ok`: a valid signature, the AI-generated assertion and the recipe bound to it, by a
    signer this installation trusts (or any signer, when asked). `problems` say what failed, one line each."""

    signed: bool = False
    signature_valid: bool = False
    trusted: bool = False
    ai_generated: bool = False
    recipe_bound: bool = False
    signer: str = ""
    problems: list[str] = field(default_factory=list)

    def ok(self, *, any_signer: bool = False) -> bool:
        return (
            self.signature_valid
            and self.ai_generated
            and self.recipe_bound
            and (self.trusted or any_signer)
            and not self.problems
        )


def check(data: bytes, recipe_text: str | None, trust_pem: bytes | None = None) -> Verdict:
    """Check the C2PA manifest of an image whose recipe chunk reads `recipe_text` (None: it has none),
    trusting the CA certificates `trust_pem` (None: no signer is trusted, only validity is checked)."""
    import c2pa

    verdict = Verdict()
    settings: dict = {"verify": {"verify_trust": True}}
    if trust_pem:
        settings["trust"] = {"trust_anchors": trust_pem.decode()}
    try:
        reader = c2pa.Reader.try_create("image/png", io.BytesIO(data), None, c2pa.Context.from_dict(settings))
    except Exception as exc:  # a manifest the library cannot even parse
        verdict.problems.append(f"the Content Credentials cannot be read ({exc})")
        return verdict
    if reader is None:
        verdict.problems.append("the image has no Content Credentials (C2PA manifest)")
        return verdict
    with reader:
        state, manifest = reader.get_validation_state(), reader.get_active_manifest()
        results = reader.get_validation_results() or {}
    if manifest is None:
        verdict.problems.append("the image has no Content Credentials (C2PA manifest)")
        return verdict
    verdict.signed = True
    failures = [f.get("code", "") for f in results.get("activeManifest", {}).get("failure", [])]
    info = manifest.get("signature_info") or {}
    verdict.signer = ", ".join(x for x in (info.get("common_name"), info.get("issuer")) if x)
    verdict.signature_valid = state in ("Valid", "Trusted")
    verdict.trusted = state == "Trusted"
    if not verdict.signature_valid:
        shown = ", ".join(code for code in failures if code != "signingCredential.untrusted")
        verdict.problems.append(
            f"the manifest does not validate ({shown or state}): the image or its recipe "
            "was changed after signing"
        )
    assertions = {a.get("label", ""): a.get("data") or {} for a in manifest.get("assertions", [])}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get("actions", [])
    verdict.ai_generated = any(
        a.get("action") == "c2pa.created" and a.get("digitalSourceType") == TRAINED_ALGORITHMIC_MEDIA
        for a in actions
    )
    if not verdict.ai_generated:
        verdict.problems.append("the manifest does not mark the image as AI-generated (c2pa.created)")
    bound = assertions.get(RECIPE_ASSERTION, {}).get("sha256")
    if recipe_text is None:
        verdict.problems.append("the image has no Atelier recipe")
    elif bound is None:
        verdict.problems.append("the manifest binds no Atelier recipe")
    elif bound != recipe_hash(recipe_text):
        verdict.problems.append("the recipe was edited: its hash differs from the one signed in the manifest")
    else:
        verdict.recipe_bound = True
    return verdict


def _version() -> str:
    from jobs.recipe import atelier_version

    return atelier_version()


def describe(verdict: Verdict, *, any_signer: bool = False) -> str:
    """The verdict as a few lines for a person: OK or FAILED, the signer, and each problem."""
    lines = [("OK: " if verdict.ok(any_signer=any_signer) else "FAILED: ") + _headline(verdict, any_signer)]
    if verdict.signer and verdict.signature_valid:
        trust = (
            "trusted by this installation"
            if verdict.trusted
            else "not a certificate this installation trusts"
        )
        lines.append(f"signed by: {verdict.signer} ({trust})")
    lines += [f"problem: {p}" for p in verdict.problems]
    if verdict.signature_valid and not verdict.trusted and not any_signer and not verdict.problems:
        lines.append("problem: the signer is unknown here (pass --any-signer to accept any valid signature)")
    return "\n".join(lines)


def _headline(verdict: Verdict, any_signer: bool) -> str:
    if verdict.ok(any_signer=any_signer):
        return "signed Content Credentials, AI-generated (trainedAlgorithmicMedia), recipe intact"
    return "the image's provenance does not check out"
