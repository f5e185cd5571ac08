"""LoRAs: named adapter files, applied to a pipeline for one call and removed afterwards.

`LoraLibrary.path` is the one place a LoRA name becomes a file: by default a folder of `<name>.safetensors`
(ATELIER_LORA_DIR), which every tenant may use. LoRAs trained for one tenant are named in job specs by a scoped
name, `<name>@<id>` (`scoped_name`; the id is the LoRA record's), whose file the worker fetches from the blob
store into `<folder>/trained/<id>.safetensors` (`LoraLibrary.trained_path`) before the engine runs, and only
when the record belongs to the job's tenant. Front-ends validate names through `TenantLoras`, a tenant's view:
its own LoRAs over the shared folder, so a LoRA of another tenant is simply unknown. The scope also keeps
jobs of two tenants with equally named LoRAs out of one batch.

`applied_loras` loads each file as a peft adapter (diffusers `load_lora_weights`), sets the weights with
`set_adapters`, and unloads every adapter on the way out, also when generation fails or is cancelled: cached
pipelines are shared by every later job, which must see the untouched base model. Weights are never fused into
the base (unfusing does not restore them bit for bit); reloading costs a file read per call.

This module imports neither torch nor diffusers, so front-ends can validate LoRA names before enqueueing.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

LORA_SUFFIX = ".safetensors"
SCOPE = "@"
TRAINED_DIR = "trained"
LORA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""What a LoRA name may be: it is a file name and a peft adapter name, so no dots, slashes or spaces."""

MAX_LORAS = 4
MIN_WEIGHT, MAX_WEIGHT = -2.0, 2.0

LoraWeights = tuple[tuple[str, float], ...]
"""(name, weight) pairs, in the order they were asked for."""


class UnknownLoraError(ValueError):
    """A LoRA name the library does not have; the message lists the names it does have."""


def scoped_name(name: str, lora_id: int) -> str:
    """The name a spec carries for a tenant's own LoRA: unique across tenants (and a valid peft adapter name)."""
    return f"{name}{SCOPE}{lora_id}"


def split_scoped(name: str) -> tuple[str, int | None]:
    """`"ink@12"` → ("ink", 12); a plain name → (name, None)."""
    base, sep, lora_id = name.partition(SCOPE)
    return (base, int(lora_id)) if sep and lora_id.isdigit() else (name, None)


class LoraLibrary:
    """The LoRAs this installation offers: each `<name>.safetensors` in one folder (a missing folder has none)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = None if folder is None else Path(folder)

    def names(self) -> list[str]:
        """Known LoRA names, sorted; files whose stem is not a valid name are ignored."""
        if self.folder is None or not self.folder.is_dir():
            return []
        stems = (path.stem for path in self.folder.glob(f"*{LORA_SUFFIX}") if path.is_file())
        return sorted(stem for stem in stems if LORA_NAME.fullmatch(stem))

    def trained_path(self, lora_id: int) -> Path:
        """Where the worker keeps the fetched file of trained LoRA `lora_id` (ValueError without a folder)."""
        if self.folder is None:
            raise ValueError("trained LoRAs need a LoRA folder (set ATELIER_LORA_DIR)")
        return self.folder / TRAINED_DIR / f"{lora_id}{LORA_SUFFIX}"

    def path(self, name: str) -> Path:
        """The safetensors file of LoRA `name`; UnknownLoraError, listing the known names, when there is none.

        A scoped name (`ink@12`) is found only once the worker has fetched it for a job of its own tenant."""
        base, lora_id = split_scoped(name)
        if lora_id is not None and self.folder is not None and LORA_NAME.fullmatch(base):
            path = self.trained_path(lora_id)
            if path.is_file():
                return path
            raise UnknownLoraError(f"unknown LoRA {base!r}: this server has no LoRA of that name")
        if self.folder is not None and LORA_NAME.fullmatch(name):
            path = self.folder / f"{name}{LORA_SUFFIX}"
            if path.is_file():
                return path
        known = self.names()
        if known:
            raise UnknownLoraError(f"unknown LoRA {name!r}; known LoRAs: {', '.join(known)}")
        where = f" (add <name>{LORA_SUFFIX} files to {self.folder})" if self.folder is not None else ""
        raise UnknownLoraError(f"unknown LoRA {name!r}: no LoRAs are installed{where}")


class TenantLoras:
    """One tenant's LoRAs: its own trained ones (name → record id) over the installation's shared folder.

    Has the library interface (`names`, `path`) for `check_loras`; `spec_name` turns a name a person typed
    into the name a job spec carries."""

    def __init__(self, library: LoraLibrary, own: dict[str, int]) -> None:
        self.library, self.own = library, dict(own)

    def names(self) -> list[str]:
        return sorted(set(self.library.names()) | set(self.own))

    def path(self, name: str) -> Path:
        """The file of LoRA `name` as seen by this tenant (for its own LoRAs: where the worker will fetch it)."""
        if name in self.own:
            return self.library.trained_path(self.own[name])
        if SCOPE not in name and name in self.library.names():
            return self.library.path(name)
        known = self.names()
        listing = f"; known LoRAs: {', '.join(known)}" if known else ": none are available here"
        raise UnknownLoraError(f"unknown LoRA {name!r}{listing}")

    def spec_name(self, name: str) -> str:
        return scoped_name(name, self.own[name]) if name in self.own else name


def check_loras(loras: Sequence[tuple[str, float]], library: LoraLibrary | TenantLoras | None = None) -> None:
    """Raise ValueError for too many LoRAs, a repeated name, a weight out of range, or (with `library`) a
    name the library does not have."""
    if len(loras) > MAX_LORAS:
        raise ValueError(f"at most {MAX_LORAS} LoRAs per request (got {len(loras)})")
    seen: set[str] = set()
    for name, weight in loras:
        if name in seen:
            raise ValueError(f"LoRA {name!r} is given twice; give it once with one weight")
        seen.add(name)
        if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
            raise ValueError(
                f"LoRA {name!r}: the weight must be between {MIN_WEIGHT:g} and {MAX_WEIGHT:g} (got {weight:g})"
            )
        if library is not None:
            library.path(name)


@contextlib.contextmanager
def applied_loras(pipeline: Any, loras: Sequence[tuple[str, Path, float]], *, model: str) -> Iterator[None]:
    """Within the block, `pipeline` runs with each (name, file, weight) LoRA; afterwards it is the base model.

    A file that does not fit the model (another architecture, no LoRA keys, no matching layers) is a
    ValueError naming the LoRA and the model.
    """
    if not loras:
        yield
        return
    if not hasattr(pipeline, "load_lora_weights"):
        raise ValueError(f"model {model!r} does not take LoRAs")
    try:
        for name, path, _ in loras:
            _load(pipeline, name, Path(path), model)
        pipeline.set_adapters([name for name, _, _ in loras], adapter_weights=[w for _, _, w in loras])
        yield
    finally:
        pipeline.unload_lora_weights()


def _load(pipeline: Any, name: str, path: Path, model: str) -> None:
    try:
        pipeline.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
    except Exception as error:  # diffusers and peft raise many kinds for a file that does not fit
        raise ValueError(f"LoRA {name!r} does not fit model {model!r}: {error}") from error
    loaded = {adapter for adapters in pipeline.get_list_adapters().values() for adapter in adapters}
    if name not in loaded:
        raise ValueError(f"LoRA {name!r} has no layers that match model {model!r}: is it for another model?")
