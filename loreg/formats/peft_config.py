"""adapter_config.json: read, checked, and resolved per module the way PEFT resolves it.

Rank and alpha are resolved per module exactly as PEFT does (``peft.utils.other.
get_pattern_key``): the first pattern key ``k`` (in the config's order) for which
``re.match(rf"(.*\\.)?({k})$", module_name)`` matches wins; otherwise ``r``/``lora_alpha``.
AdaLoRA's scale is ``lora_alpha / (init_r + 1e-5)`` whatever rank allocation left (PEFT keeps
``ranknum`` at ``init_r``); its ranks come from the boolean masks of ``rank_pattern``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, ClassVar

from loreg.errors import InvalidInput
from loreg.formats.types import OptionFinding

CONFIG_NAME = "adapter_config.json"
MAX_CONFIG_BYTES = 16 * 1024 * 1024
PEFT_TYPES = ("LORA", "ADALORA", "TRAINABLE_TOKENS")
ADALORA_EPS = 1e-5  # PEFT divides by ranknum + 1e-5
_CONVERT_HINT = (
    "convert it to a LoRA adapter first with PEFT's save_as_lora(path, peft_model, rank=...)"
    " (an SVD of each layer's delta; PEFT supports it for methods whose layers add a delta"
    " weight), or merge it with PEFT's merge_and_unload()"
)


class AdapterFormatError(InvalidInput):
    """The adapter folder, its config or its weights are not a readable PEFT LoRA adapter."""

    code: ClassVar[str] = "invalid_adapter"


def parse_config(data: bytes, *, name: str = CONFIG_NAME) -> dict[str, Any]:
    """Decode adapter_config.json bytes into a dict (no validation beyond JSON)."""
    if len(data) > MAX_CONFIG_BYTES:
        raise AdapterFormatError(f"{name} is {len(data)} bytes, over {MAX_CONFIG_BYTES}")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise AdapterFormatError(f"{name} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise AdapterFormatError(f"{name} is not a JSON object")
    return doc


def check_config(config: Any) -> dict[str, Any]:
    """``config`` if it is a config loreg can apply, else ``AdapterFormatError`` saying why."""
    if not isinstance(config, dict):
        raise AdapterFormatError(f"{CONFIG_NAME} is not a JSON object")
    peft_type = config.get("peft_type")
    if peft_type is None:
        raise AdapterFormatError(f"{CONFIG_NAME} has no peft_type (is this a PEFT adapter?)")
    if str(peft_type).upper() not in PEFT_TYPES:
        raise AdapterFormatError(
            f"unsupported peft_type {peft_type!r}: loreg merges LoRA, AdaLoRA and trainable-tokens"
            " adapters only;"
            f" {_CONVERT_HINT}",
            details={"peft_type": str(peft_type)},
        )
    if str(peft_type).upper() == "TRAINABLE_TOKENS":
        if token_indices(config) is None:
            raise AdapterFormatError(
                f"{CONFIG_NAME}: a trainable-tokens adapter needs token_indices"
            )
        return config
    adalora = str(peft_type).upper() == "ADALORA"
    _check_rank_and_alpha(config, adalora=adalora)
    _check_patterns(config, adalora=adalora)
    _check_name_lists(config)
    token_indices(config)
    return config


def _check_rank_and_alpha(config: dict[str, Any], *, adalora: bool) -> None:
    rank_field = "init_r" if adalora else "r"
    r = config.get(rank_field, 12 if adalora else None)
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise AdapterFormatError(
            f"{CONFIG_NAME}: {rank_field} must be a positive integer, got {r!r}"
        )
    alpha = config.get("lora_alpha", 8)
    if not isinstance(alpha, int | float) or isinstance(alpha, bool):
        raise AdapterFormatError(f"{CONFIG_NAME}: lora_alpha must be a number, got {alpha!r}")


def _check_patterns(config: dict[str, Any], *, adalora: bool) -> None:
    """``alpha_pattern`` maps to numbers; ``rank_pattern`` to positive ranks, or for AdaLoRA
    to boolean masks."""
    patterns: tuple[tuple[str, Any], ...] = (("alpha_pattern", (int, float)),)
    patterns += (("rank_pattern", list),) if adalora else (("rank_pattern", int),)
    for field_name, kind in patterns:
        pattern = config.get(field_name) or {}
        if not isinstance(pattern, dict) or not all(
            isinstance(k, str) and isinstance(v, kind) and not isinstance(v, bool)
            for k, v in pattern.items()
        ):
            what = "boolean rank masks" if kind is list else "numbers"
            raise AdapterFormatError(
                f"{CONFIG_NAME}: {field_name} must map module patterns to {what}"
            )
        if field_name == "rank_pattern" and kind is int and any(v <= 0 for v in pattern.values()):
            raise AdapterFormatError(f"{CONFIG_NAME}: rank_pattern ranks must be positive")
        if kind is list and not all(all(isinstance(b, bool) for b in v) for v in pattern.values()):
            raise AdapterFormatError(f"{CONFIG_NAME}: AdaLoRA rank_pattern masks must be booleans")


def _check_name_lists(config: dict[str, Any]) -> None:
    """``modules_to_save``, ``target_modules`` and ``target_parameters`` name modules."""
    mts = config.get("modules_to_save")
    if mts is not None and (not isinstance(mts, list) or not all(isinstance(m, str) for m in mts)):
        raise AdapterFormatError(f"{CONFIG_NAME}: modules_to_save must be a list of names")
    targets = config.get("target_modules")
    if targets is not None and not (
        isinstance(targets, str)
        or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))
    ):
        raise AdapterFormatError(
            f"{CONFIG_NAME}: target_modules must be a name list or a regex string"
        )
    params = config.get("target_parameters")
    if params is not None and not (
        isinstance(params, list) and all(isinstance(t, str) and t for t in params)
    ):
        raise AdapterFormatError(f"{CONFIG_NAME}: target_parameters must be a list of names")


def token_indices(config: dict[str, Any]) -> dict[str, tuple[int, ...]] | None:
    """``trainable_token_indices`` as {layer name or "": indices}; "" is PEFT's list form,
    which means the model's input embedding layer."""
    raw = config.get("trainable_token_indices")
    if str(config.get("peft_type", "")).upper() == "TRAINABLE_TOKENS":
        raw = config.get("token_indices")  # PEFT's TrainableTokensConfig: one list for all layers
    if raw is None:
        return None

    def ids(value: Any, where: str) -> tuple[int, ...]:
        if not isinstance(value, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value
        ):
            raise AdapterFormatError(
                f"{CONFIG_NAME}: trainable_token_indices{where} must be a list of token ids"
            )
        if len(set(value)) != len(value):
            raise AdapterFormatError(
                f"{CONFIG_NAME}: trainable_token_indices{where} lists a token id twice; PEFT"
                " would write that row in an undefined order"
            )
        return tuple(value)

    if isinstance(raw, list):
        return {"": ids(raw, "")}
    if isinstance(raw, dict) and all(isinstance(k, str) and k for k in raw):
        return {k: ids(v, f"[{k!r}]") for k, v in raw.items()}
    raise AdapterFormatError(
        f"{CONFIG_NAME}: trainable_token_indices must be a list of token ids or a mapping of"
        " layer names to lists"
    )


def get_pattern_key(pattern_keys: list[str], module_name: str) -> str | None:
    """The pattern key PEFT would apply to ``module_name``, or ``None``."""
    for key in pattern_keys:
        try:
            if re.match(rf"(.*\.)?({key})$", module_name):
                return key
        except re.error:
            continue
    return None


def resolve_rank_alpha(config: dict[str, Any], module_name: str) -> tuple[int, float]:
    """``(r, alpha)`` of one module after ``rank_pattern`` / ``alpha_pattern``, as PEFT does."""
    rank_pattern = config.get("rank_pattern") or {}
    alpha_pattern = config.get("alpha_pattern") or {}
    rk = get_pattern_key(list(rank_pattern), module_name)
    ak = get_pattern_key(list(alpha_pattern), module_name)
    r = int(rank_pattern[rk]) if rk is not None else int(config["r"])
    alpha = float(alpha_pattern[ak]) if ak is not None else float(config["lora_alpha"])
    return r, alpha


def lora_scale(r: int, alpha: float, use_rslora: bool) -> float:
    """PEFT's ``scaling``: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    if r <= 0:
        return 0.0
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def module_matches(target_modules: list[str] | str | None, module_name: str) -> bool:
    """Whether PEFT's ``target_modules`` selects ``module_name`` (full regex, or name suffix)."""
    if not target_modules:
        return False
    if isinstance(target_modules, str):
        if target_modules == "all-linear":
            return True
        try:
            return re.fullmatch(target_modules, module_name) is not None
        except re.error:
            return False
    return any(module_name == t or module_name.endswith("." + t) for t in target_modules)


def adalora_scale(config: dict[str, Any], module_rank: int) -> float:
    """PEFT's AdaLoRA scaling ``lora_alpha / (ranknum + 1e-5)``; ``ranknum`` stays ``init_r``
    after rank allocation (PEFT copies it back when it resizes a layer)."""
    init_r = int(config.get("init_r", 12))
    alpha = float(config.get("lora_alpha", 8))
    scaling = alpha if alpha > 0 else float(module_rank)
    return scaling / (init_r + ADALORA_EPS)


def adalora_rank(config: dict[str, Any], module_name: str) -> int:
    """The rank AdaLoRA's allocation left a module (its ``rank_pattern`` mask), else init_r."""
    for key, mask in (config.get("rank_pattern") or {}).items():
        prefix = key.rsplit(".", 1)[0] if key.endswith(".lora_E") else key
        if prefix == module_name or prefix.endswith("." + module_name):
            return sum(1 for b in mask if b)
    return int(config.get("init_r", 12))


def adalora_findings(config: dict[str, Any]) -> list[OptionFinding]:
    """AdaLoRA features loreg does not merge (PEFT's AdaLoRA rejects most of them too)."""
    found = []
    for key in ("use_dora", "lora_bias", "target_parameters", "trainable_token_indices"):
        if config.get(key):
            found.append(
                OptionFinding(key, "unsupported_option", f"{key} with AdaLoRA is not supported")
            )
    return found
