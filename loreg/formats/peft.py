"""PEFT adapters: adapter_config.json + the safetensors header -> ``AdapterDescription``.

Works from the config and the header alone (no tensor bytes), so the API can describe an
upload after two ranged reads. ``loreg.formats.peft_config`` checks the config and resolves
each module's rank, alpha and scale as PEFT does; ``loreg.formats.peft_keys`` sorts the
header's keys by what they hold; this module puts the two together into one description.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from loreg.formats.options import option_findings
from loreg.formats.peft_config import (
    CONFIG_NAME,
    AdapterFormatError,
    adalora_findings,
    adalora_rank,
    adalora_scale,
    check_config,
    lora_scale,
    module_matches,
    parse_config,
    resolve_rank_alpha,
    token_indices,
)
from loreg.formats.peft_keys import (
    KeyRules,
    LoraParts,
    SortedKeys,
    looks_like_vocab_layer,
    sort_keys,
)
from loreg.formats.safetensors import read_header
from loreg.formats.types import (
    AdapterDescription,
    LoraModule,
    SafetensorsHeader,
    SavedModule,
    TensorInfo,
    TokenModule,
)

WEIGHTS_NAME = "adapter_model.safetensors"
LEGACY_WEIGHTS_NAME = "adapter_model.bin"


def describe_adapter(
    config: dict[str, Any], header: SafetensorsHeader, *, size_bytes: int
) -> AdapterDescription:
    """Describe an adapter from its parsed config and its weights' header alone."""
    config = check_config(config)
    peft_type = str(config["peft_type"]).upper()
    adalora = peft_type == "ADALORA"
    tokens_config = token_indices(config)
    found = sort_keys(
        header,
        KeyRules(
            adalora=adalora,
            trainable_tokens=tokens_config is not None,
            trains_biases=config.get("bias") in ("all", "lora_only"),
            modules_to_save=list(config.get("modules_to_save") or []),
        ),
    )
    modules = _lora_modules(config, found, adalora=adalora)
    token_modules = _token_modules(found, tokens_config)
    saved_modules = _saved_modules(found, header)
    embedding_touched = any(m.kind == "embedding" for m in modules.values()) or any(
        looks_like_vocab_layer(n) for n in saved_modules
    )
    options = option_findings(config, has_embedding_lora=embedding_touched)
    if adalora:
        options += adalora_findings(config)
    target_modules = config.get("target_modules")
    return AdapterDescription(
        peft_type=peft_type,
        task_type=config.get("task_type"),
        base_model_name_or_path=config.get("base_model_name_or_path"),
        r=_recorded_rank(config, peft_type, token_modules),
        lora_alpha=float(config.get("lora_alpha", 8 if "r" in config else 0)),
        use_rslora=_uses_rslora(config),
        use_dora=bool(config.get("use_dora", False)),
        rank_pattern={}
        if adalora
        else {k: int(v) for k, v in (config.get("rank_pattern") or {}).items()},
        alpha_pattern={}
        if adalora
        else {k: float(v) for k, v in (config.get("alpha_pattern") or {}).items()},
        target_modules=target_modules
        if isinstance(target_modules, str)
        else list(target_modules or []),
        modules_to_save=list(config.get("modules_to_save") or []),
        fan_in_fan_out=bool(config.get("fan_in_fan_out", False)),
        lora_bias=bool(config.get("lora_bias", False)),
        dtype=_dominant_dtype(found, header),
        num_parameters=sum(t.numel for t in header.tensors.values()),
        size_bytes=size_bytes,
        config=config,
        modules=modules,
        saved_modules=saved_modules,
        tensors=dict(header.tensors),
        ignored_keys=tuple(sorted(found.ignored)),
        unmapped_keys=tuple(sorted(set(found.unmapped))),
        token_modules=token_modules,
        option_findings=tuple(options),
        target_parameters=tuple(config.get("target_parameters") or []),
    )


def _uses_rslora(config: dict[str, Any]) -> bool:
    return bool(config.get("use_rslora", False)) and str(config["peft_type"]).upper() != "ADALORA"


def _lora_modules(
    config: dict[str, Any], found: SortedKeys, *, adalora: bool
) -> dict[str, LoraModule]:
    """One ``LoraModule`` per complete set of LoRA tensors; a half pair goes to unmapped
    (it cannot be applied, and guessing would be worse)."""
    modules: dict[str, LoraModule] = {}
    for mod_name, p in sorted(found.lora.items()):
        if p.a is None or p.b is None or (adalora and p.e is None):
            found.unmapped.extend(p.keys)
            continue
        modules[mod_name] = _lora_module(config, mod_name, p, p.a, p.b, adalora=adalora)
    return modules


def _lora_module(
    config: dict[str, Any],
    mod_name: str,
    p: LoraParts,
    a: TensorInfo,
    b: TensorInfo,
    *,
    adalora: bool,
) -> LoraModule:
    """The module with its kind, rank, alpha and scale resolved as PEFT resolves them."""
    kind = "conv" if len(a.shape) == 4 and p.kind == "linear" else p.kind
    target_parameters = list(config.get("target_parameters") or [])
    candidates = (
        _parameter_candidates(target_parameters, _strip_nesting(mod_name))
        if target_parameters and kind == "linear"
        else ()
    )
    if candidates and not _is_parameter_wrapper(config, mod_name, a, candidates):
        candidates = ()
    if adalora:
        r = adalora_rank(config, mod_name)
        alpha = float(config.get("lora_alpha", 8))
        scale = adalora_scale(config, r)
    else:
        pattern_name = f"{_strip_nesting(mod_name)}.{candidates[0]}" if candidates else mod_name
        r, alpha = resolve_rank_alpha(config, pattern_name)
        scale = lora_scale(r, alpha, _uses_rslora(config))
    experts = 1
    if candidates and a.shape and r > 0 and a.shape[0] % r == 0:
        experts = max(1, a.shape[0] // r)
    return LoraModule(
        name=mod_name,
        kind="parameter" if candidates else kind,
        r=r,
        alpha=alpha,
        scale=scale,
        fan_in_fan_out=bool(config.get("fan_in_fan_out", False))
        and kind == "linear"
        and not candidates,
        a_key=a.name,
        b_key=b.name,
        a_shape=a.shape,
        b_shape=b.shape,
        magnitude_key=p.mag.name if p.mag else None,
        magnitude_shape=p.mag.shape if p.mag else None,
        bias_key=p.bias.name if p.bias else None,
        e_key=p.e.name if p.e else None,
        num_experts=experts,
        parameters=candidates,
    )


def _token_modules(
    found: SortedKeys, tokens_config: dict[str, tuple[int, ...]] | None
) -> dict[str, TokenModule]:
    """Trainable-token layers with the token ids the config gives each."""
    token_modules: dict[str, TokenModule] = {}
    for mod_name, info in sorted(found.tokens.items()):
        assert tokens_config is not None  # sort_keys takes token rows only then
        indices = _indices_for(tokens_config, mod_name)
        if indices is None:
            found.unmapped.append(info.name)
            continue
        token_modules[mod_name] = TokenModule(mod_name, info.name, indices, info.shape)
    return token_modules


def _saved_modules(found: SortedKeys, header: SafetensorsHeader) -> dict[str, SavedModule]:
    return {
        name: SavedModule(
            name=name,
            tensors=dict(sorted(t.items())),
            shapes={base: header.tensors[k].shape for base, k in sorted(t.items())},
            origin=found.saved_origin[name],
        )
        for name, t in sorted(found.saved.items())
    }


def _dominant_dtype(found: SortedKeys, header: SafetensorsHeader) -> str:
    """The dtype most LoRA tensors have (of all tensors when there are none)."""
    counts = Counter(
        header.tensors[k].dtype for p in found.lora.values() for k in p.keys
    ) or Counter(t.dtype for t in header.tensors.values())
    return counts.most_common(1)[0][0] if counts else "F32"


def _parameter_candidates(targets: list[str], module: str) -> tuple[str, ...]:
    """The parameters of ``module`` that ``target_parameters`` selects, as PEFT matches
    them: ``module.param`` equal to a target or ending with ``"." + target``."""
    found: list[str] = []
    # targets naming the module come first: a bare name (``down_proj``) matches any module
    for t in sorted(targets, key=lambda t: "." not in t):
        param = t.rpartition(".")[2]
        key = f"{module}.{param}"
        if (key == t or key.endswith("." + t)) and param not in found:
            found.append(param)
    return tuple(found)


def _strip_nesting(name: str) -> str:
    while name.endswith(".base_layer"):
        name = name[: -len(".base_layer")]
    return name


def _recorded_rank(
    config: dict[str, Any], peft_type: str, token_modules: dict[str, TokenModule]
) -> int:
    """The rank the registry records: ``r``, AdaLoRA's ``init_r``, or for a trainable-tokens
    adapter (which has no rank) its number of token rows."""
    if peft_type == "ADALORA":
        return int(config.get("init_r", 12))
    if peft_type == "TRAINABLE_TOKENS":
        return max((len(t.indices) for t in token_modules.values()), default=1)
    return int(config["r"])


def _is_parameter_wrapper(
    config: dict[str, Any], mod_name: str, a: TensorInfo, candidates: tuple[str, ...]
) -> bool:
    """Is this LoRA module PEFT's wrapper of a parameter (``target_parameters``) rather
    than a LoRA layer (``target_modules``)? Both save ``<module>.lora_A.weight``.

    A bare target name (``down_proj``) matches a parameter of that name on any module, so
    candidates alone do not decide it: a wrapper nested in another is one; a module that
    ``target_modules`` selects is a LoRA layer; a LoRA on a 2-D ``weight`` is the same math
    either way (a LoRA layer, for loreg). With ``all-linear`` (which PEFT may keep as a
    string) a wrapper is told by ``lora_A`` holding several experts' rows.
    """
    if mod_name.endswith(".base_layer"):
        return True
    if candidates == ("weight",):
        return False
    targets = config.get("target_modules")
    if targets == "all-linear":
        r, _ = resolve_rank_alpha(config, mod_name)
        return bool(a.shape) and a.shape[0] != r
    return not module_matches(targets, mod_name)


def _indices_for(token_indices: dict[str, tuple[int, ...]], module: str) -> tuple[int, ...] | None:
    """The token ids PEFT used for the trainable-tokens layer ``module``.

    A list in the config applies to the input embedding (and to the output layer tied to
    it, which PEFT then saves with the same ids); a mapping names layers by suffix. A layer
    the mapping does not name, next to a mapping of one layer, is the tied copy of that one.
    """
    if "" in token_indices:
        return token_indices[""]
    for name, ids in token_indices.items():
        if module == name or module.endswith("." + name):
            return ids
    if len(token_indices) == 1:
        return next(iter(token_indices.values()))
    return None


def read_adapter(path: Path) -> AdapterDescription:
    """Read a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)."""
    path = Path(path)
    if not path.is_dir():
        raise AdapterFormatError(f"{path} is not a folder")
    cfg_path = path / CONFIG_NAME
    if not cfg_path.is_file():
        raise AdapterFormatError(f"{path}: no {CONFIG_NAME} (is this a PEFT adapter folder?)")
    config = parse_config(cfg_path.read_bytes(), name=str(cfg_path))
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        if (path / LEGACY_WEIGHTS_NAME).is_file():
            raise AdapterFormatError(
                f"{path}: only {LEGACY_WEIGHTS_NAME} (a pickle) found; loreg does not unpickle"
                f" untrusted files. Convert it to {WEIGHTS_NAME} first, e.g.\n"
                '  python -c "import torch; from safetensors.torch import save_file; '
                f"save_file(torch.load('{LEGACY_WEIGHTS_NAME}', weights_only=True), "
                f"'{WEIGHTS_NAME}')\"\n"
                "(or load the adapter with PEFT and save_pretrained() it again)",
                details={"file": LEGACY_WEIGHTS_NAME},
            )
        raise AdapterFormatError(f"{path}: no {WEIGHTS_NAME}")
    with open(weights, "rb") as f:
        header = read_header(f, name=WEIGHTS_NAME)
    return describe_adapter(config, header, size_bytes=weights.stat().st_size)
