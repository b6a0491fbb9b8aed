"""A vLLM LoRA resolver: a request's ``model`` (``ns/name``, ``ns/name:tag``, ``ns/name@7``)
is resolved through loreg, downloaded into a local cache, and refused when its base is not
the model vLLM serves.

vLLM loads it as a general plugin (entry point ``loreg_resolver`` in the group
``vllm.general_plugins``; enable it with ``VLLM_PLUGINS=loreg_resolver``, and run vLLM with
``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``). The plugin reads its
settings once: ``LOREG_URL``, ``LOREG_TOKEN`` (a read token), ``LOREG_VLLM_CACHE_DIR`` and,
when vLLM serves the base under another name than the registered one, ``LOREG_VLLM_BASE``.

The check: the adapter version's base fingerprint must equal the fingerprint of the
registered base named like the served model. A mismatch raises ``BaseMismatch`` (the request
fails with its message) instead of serving an adapter on weights it was not trained for.
vLLM itself is imported only inside ``register``; everything else is plain Python, tested
without a GPU.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loreg.client import Client
from loreg.client.errors import NotFound
from loreg.config import Settings

log = logging.getLogger("loreg.serving")

RESOLVER_NAME = "loreg"


class ResolverError(ValueError):
    """An adapter that must not be served; the message says why and what to do."""


class BaseMismatch(ResolverError):
    pass


@dataclass(frozen=True)
class ResolvedAdapter:
    """An adapter version ready for vLLM: where it is, and a stable integer id."""

    name: str
    ref: str
    digest: str
    path: Path

    @property
    def int_id(self) -> int:
        """vLLM's ``lora_int_id``: positive, and the same for the same content."""
        return zlib.crc32(self.digest.encode()) % (2**31 - 1) + 1


class AdapterResolver:
    """The plugin's logic: resolve, check the base, download once per version digest."""

    def __init__(self, client: Client, cache_dir: Path, *, base: str | None = None) -> None:
        self.client = client
        self.cache_dir = cache_dir
        self.base = base
        self.downloads = 0
        self._lock = threading.Lock()
        self._fingerprints: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> AdapterResolver:
        cache = settings.vllm_cache_dir or settings.home / "vllm-adapters"
        return cls(Client.from_settings(settings), cache, base=settings.vllm_base)

    def _served_fingerprint(self, served: str) -> str:
        name = self.base or served
        if name not in self._fingerprints:
            try:
                self._fingerprints[name] = self.client.get_base(name).fingerprint
            except NotFound:
                raise ResolverError(
                    f"vLLM serves '{name}', which is not a registered base model in loreg; "
                    "register it (loreg base register DIR --name NAME) or set LOREG_VLLM_BASE "
                    "to the registered name of the served weights"
                ) from None
        return self._fingerprints[name]

    def resolve(self, served_model: str, lora_name: str) -> ResolvedAdapter | None:
        """The adapter ``lora_name`` names, on disk; ``None`` when loreg has no such adapter
        (vLLM then answers 'model not found')."""
        try:
            version = self.client.resolve(lora_name)
        except NotFound:
            return None
        ref = version.ref
        base = version.base_model
        wanted = self._served_fingerprint(served_model)
        if base is None or base.fingerprint != wanted:
            raise BaseMismatch(
                f"adapter {ref} was checked against base '{base.name if base else None}' "
                f"({base.fingerprint if base else None}), but vLLM serves "
                f"'{self.base or served_model}' ({wanted}): refusing to apply it to other weights"
            )
        folder = self.cache_dir / version.digest.replace(":", "-")
        with self._lock:
            if not (folder / "adapter_config.json").is_file():
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                self.client.pull(ref, folder, force=folder.exists())
                self.downloads += 1
        return ResolvedAdapter(lora_name, ref, version.digest, folder)


def register() -> bool:
    """vLLM's plugin hook: register the resolver; False when vLLM is not installed."""
    try:
        from vllm.lora.request import LoRARequest
        from vllm.lora.resolver import LoRAResolver, LoRAResolverRegistry
    except ImportError:
        log.warning("vLLM is not installed: the loreg LoRA resolver is not registered")
        return False

    resolver = AdapterResolver.from_settings(Settings())

    class LoregResolver(LoRAResolver):
        async def resolve_lora(self, base_model_name: str, lora_name: str) -> Any:
            found = await asyncio.to_thread(resolver.resolve, base_model_name, lora_name)
            if found is None:
                return None
            return LoRARequest(
                lora_name=found.name, lora_int_id=found.int_id, lora_path=str(found.path)
            )

    LoRAResolverRegistry.register_resolver(RESOLVER_NAME, LoregResolver())
    return True
