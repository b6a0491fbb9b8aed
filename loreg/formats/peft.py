"""PEFT LoRA adapters: adapter_config.json + the safetensors header -> ``AdapterDescription``.

Works from the config and the header alone (no tensor bytes), so the API can describe an
upload after two ranged reads. Keys are interpreted the way PEFT writes them:

- ``base_model.model.`` prefix (absent in some third-party exports; then names are used as-is);
- ``<module>.lora_A[.<adapter>].weight`` / ``lora_B`` (+ ``lora_B[.<adapter>].bias`` with
  ``lora_bias``), ``<module>.lora_embedding_A[.<adapter>]`` / ``_B`` for embeddings,
  ``<module>.lora_magnitude_vector[.<adapter>][.weight]`` for DoRA;
- ``<module>.base_layer.<param>``: the wrapped layer saved whole (PEFT does this for
  embedding / lm_head targets, e.g. after the vocabulary grew);
- ``<module>.token_adapter.trainable_tokens_delta``: trainable tokens
  (``trainable_token_indices``), the new values of some embedding rows;
- ``<embedding or output layer>.weight`` without a wrapper: PEFT saves those whole when the
  vocabulary was resized during training, and loading puts them in place;
- with ``bias="all"`` / ``"lora_only"``: ``<module>[.base_layer].bias``, trained biases that
  replace the base's;
- AdaLoRA (``peft_type: ADALORA``): ``<module>.lora_A`` / ``lora_B`` / ``lora_E`` (no
  ``.weight``); the scale is ``lora_alpha / (init_r + 1e-5)`` whatever rank allocation left
  (PEFT keeps ``ranknum`` at ``init_r``), ranks from the boolean masks of ``rank_pattern``;
- ``target_parameters``: LoRA on a module's parameter (``<module>[.base_layer...].lora_A``);
  which parameter each nested wrapper adapts is settled against the base
  (``loreg.formats.targets``);
- ``modules_to_save``: ``<module>.<param>`` (current PEFT), or
  ``<module>.modules_to_save[.<adapter>].<param>`` (older PEFT; current PEFT writes both, with
  equal values, when it saves resized embeddings whole: the plain key wins, the other is
  listed in ``ignored_keys``); ``<module>.original_module.<param>`` are copies of the base
  and are ignored.

Rank and alpha are resolved per module exactly as PEFT does (``peft.utils.other.
get_pattern_key``): the first pattern key ``k`` (in the config's order) for which
``re.match(rf"(.*\\.)?({k})$", module_name)`` matches wins; otherwise ``r``/``lora_alpha``.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from loreg.errors import InvalidInput
from loreg.formats.options import option_findings
from loreg.formats.safetensors import read_header
from loreg.formats.types import (
    AdapterDescription,
    LoraKind,
    LoraModule,
    OptionFinding,
    SafetensorsHeader,
    SavedModule,
    TensorInfo,
    TokenModule,
)

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
LEGACY_WEIGHTS_NAME = "adapter_model.bin"
PEFT_PREFIX = "base_model.model."
MAX_CONFIG_BYTES = 16 * 1024 * 1024

_LORA_KEY = re.compile(
    r"^(?P<module>.+)\.(?:"
    r"(?P<ab>lora_[AB])(?:\.(?P<an1>[^.]+))?\.(?P<param>weight|bias)"
    r"|(?P<emb>lora_embedding_[AB])(?:\.(?P<an2>[^.]+))?"
    r"|(?P<mag>lora_magnitude_vector)(?:\.(?P<an3>[^.]+))?(?:\.weight)?"
    r")$"
)
_ADALORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<which>lora_[ABE])(?:\.weight)?$")
_TOKENS = re.compile(r"^(?P<module>.+?)(?:\.token_adapter)?\.trainable_tokens_delta$")
_BASE_LAYER = re.compile(r"^(?P<module>.+)\.base_layer\.(?P<param>[^.]+)$")
_MTS = re.compile(r"^(?P<module>.+)\.modules_to_save\.(?:(?P<an>[^.]+)\.)?(?P<param>[^.]+)$")
_ORIGINAL = re.compile(r"^(?P<module>.+)\.original_module\.(?P<param>.+)$")
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


def _saved_module_for(modules_to_save: list[str], name: str) -> str | None:
    """The longest dotted prefix of ``name`` that ``modules_to_save`` selects, if any."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        if any(prefix == m or prefix.endswith("." + m) for m in modules_to_save):
            return prefix
    return None


def _check_config(config: Any) -> dict[str, Any]:
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
        if _token_indices(config) is None:
            raise AdapterFormatError(
                f"{CONFIG_NAME}: a trainable-tokens adapter needs token_indices"
            )
        return config
    adalora = str(peft_type).upper() == "ADALORA"
    rank_field = "init_r" if adalora else "r"
    r = config.get(rank_field, 12 if adalora else None)
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise AdapterFormatError(
            f"{CONFIG_NAME}: {rank_field} must be a positive integer, got {r!r}"
        )
    alpha = config.get("lora_alpha", 8)
    if not isinstance(alpha, int | float) or isinstance(alpha, bool):
        raise AdapterFormatError(f"{CONFIG_NAME}: lora_alpha must be a number, got {alpha!r}")
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
        if kind is list and not all(
            all(isinstance(b, bool) for b in v) for v in pattern.values()
        ):
            raise AdapterFormatError(f"{CONFIG_NAME}: AdaLoRA rank_pattern masks must be booleans")
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
    _token_indices(config)
    return config


def _token_indices(config: dict[str, Any]) -> dict[str, tuple[int, ...]] | None:
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


def adalora_scale(config: dict[str, Any], module_rank: int) -> float:
    """PEFT's AdaLoRA scaling ``lora_alpha / (ranknum + 1e-5)``; ``ranknum`` stays ``init_r``
    after rank allocation (PEFT copies it back when it resizes a layer)."""
    init_r = int(config.get("init_r", 12))
    alpha = float(config.get("lora_alpha", 8))
    scaling = alpha if alpha > 0 else float(module_rank)
    return scaling / (init_r + ADALORA_EPS)


def _adalora_rank(config: dict[str, Any], module_name: str) -> int:
    """The rank AdaLoRA's allocation left a module (its ``rank_pattern`` mask), else init_r."""
    for key, mask in (config.get("rank_pattern") or {}).items():
        prefix = key.rsplit(".", 1)[0] if key.endswith(".lora_E") else key
        if prefix == module_name or prefix.endswith("." + module_name):
            return sum(1 for b in mask if b)
    return int(config.get("init_r", 12))


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


class _Parts:
    def __init__(self) -> None:
        self.a: TensorInfo | None = None
        self.b: TensorInfo | None = None
        self.e: TensorInfo | None = None
        self.kind: LoraKind = "linear"
        self.mag: TensorInfo | None = None
        self.bias: TensorInfo | None = None
        self.keys: list[str] = []


def _strip_nesting(name: str) -> str:
    while name.endswith(".base_layer"):
        name = name[: -len(".base_layer")]
    return name


def describe_adapter(
    config: dict[str, Any], header: SafetensorsHeader, *, size_bytes: int
) -> AdapterDescription:
    """Describe an adapter from its parsed config and its weights' header alone."""
    config = _check_config(config)
    peft_type = str(config["peft_type"]).upper()
    adalora = peft_type == "ADALORA"
    use_rslora = bool(config.get("use_rslora", False)) and not adalora
    use_dora = bool(config.get("use_dora", False))
    fan_in_fan_out = bool(config.get("fan_in_fan_out", False))
    modules_to_save = list(config.get("modules_to_save") or [])
    target_parameters = list(config.get("target_parameters") or [])
    token_indices = _token_indices(config)
    trains_biases = config.get("bias") in ("all", "lora_only")
    keys = list(header.tensors)
    has_prefix = any(k.startswith(PEFT_PREFIX) for k in keys)

    parts: dict[str, _Parts] = {}
    saved: dict[str, dict[str, str]] = {}
    saved_origin: dict[str, str] = {}
    tokens: dict[str, TensorInfo] = {}
    ignored: list[str] = []
    unmapped: list[str] = []

    for key in keys:
        if has_prefix:
            if not key.startswith(PEFT_PREFIX):
                unmapped.append(key)
                continue
            name = key[len(PEFT_PREFIX) :]
        else:
            name = key
        info = header.tensors[key]
        if adalora:
            m = _ADALORA_KEY.match(name)
            if m:
                p = parts.setdefault(m["module"], _Parts())
                p.keys.append(key)
                setattr(p, m["which"][-1].lower(), info)
                continue
        m = None if adalora else _LORA_KEY.match(name)
        if m:
            p = parts.setdefault(m["module"], _Parts())
            p.keys.append(key)
            if m["ab"]:
                if m["param"] == "bias":
                    if m["ab"] == "lora_B":
                        p.bias = info
                    else:
                        unmapped.append(key)
                elif m["ab"] == "lora_A":
                    p.a = info
                else:
                    p.b = info
            elif m["emb"]:
                p.kind = "embedding"
                if m["emb"].endswith("A"):
                    p.a = info
                else:
                    p.b = info
            else:
                p.mag = info
            continue
        m = _TOKENS.match(name)
        if m and token_indices is not None:
            tokens[m["module"]] = info
            continue
        m = _ORIGINAL.match(name)
        if m:
            ignored.append(key)
            continue
        m = _BASE_LAYER.match(name)
        if m:
            module = m["module"].removesuffix(".token_adapter")
            origin = "bias" if trains_biases and m["param"] == "bias" else "base_layer"
            saved.setdefault(module, {})[f"{module}.{m['param']}"] = key
            saved_origin[module] = origin
            continue
        m = _MTS.match(name)
        if m:
            # Older PEFT's form; newer PEFT writes it too, next to the plain key, when it
            # saves resized embeddings whole: then the two hold the same values.
            tname = f"{m['module']}.{m['param']}"
            if tname in saved.get(m["module"], {}):
                ignored.append(key)
            else:
                saved.setdefault(m["module"], {})[tname] = key
                saved_origin.setdefault(m["module"], "modules_to_save")
            continue
        owner = _saved_module_for(modules_to_save, name)
        if owner is not None:
            previous = saved.setdefault(owner, {}).get(name)
            if previous is not None:
                ignored.append(previous)
            saved[owner][name] = key
            saved_origin.setdefault(owner, "modules_to_save")
            continue
        module, _, param = name.rpartition(".")
        if param == "weight" and _looks_like_vocab_layer(module):
            # PEFT saves embedding / output layers whole when the vocabulary was resized
            # (save_embedding_layers); loading puts them in place of the base's
            saved.setdefault(module, {})[name] = key
            saved_origin.setdefault(module, "embedding_layer")
            continue
        if trains_biases and name.endswith(".bias") and "." in name:
            # bias="all" / "lora_only": PEFT trained and saved these biases; they replace the base's
            module = name.rsplit(".", 1)[0]
            saved.setdefault(module, {})[name] = key
            saved_origin.setdefault(module, "bias")
            continue
        unmapped.append(key)

    modules: dict[str, LoraModule] = {}
    for mod_name, p in sorted(parts.items()):
        if p.a is None or p.b is None or (adalora and p.e is None):
            # Half a LoRA pair cannot be applied: report its keys instead of guessing.
            unmapped.extend(p.keys)
            continue
        if len(p.a.shape) == 4 and p.kind == "linear":
            p.kind = "conv"
        candidates = (
            _parameter_candidates(target_parameters, _strip_nesting(mod_name))
            if target_parameters and p.kind == "linear"
            else ()
        )
        if candidates and not _is_parameter_wrapper(config, mod_name, p.a, candidates):
            candidates = ()
        if adalora:
            r = _adalora_rank(config, mod_name)
            alpha = float(config.get("lora_alpha", 8))
            scale = adalora_scale(config, r)
        else:
            pattern_name = f"{_strip_nesting(mod_name)}.{candidates[0]}" if candidates else mod_name
            r, alpha = resolve_rank_alpha(config, pattern_name)
            scale = lora_scale(r, alpha, use_rslora)
        experts = 1
        if candidates and p.a.shape and r > 0 and p.a.shape[0] % r == 0:
            experts = max(1, p.a.shape[0] // r)
        modules[mod_name] = LoraModule(
            name=mod_name,
            kind="parameter" if candidates else p.kind,
            r=r,
            alpha=alpha,
            scale=scale,
            fan_in_fan_out=fan_in_fan_out and p.kind == "linear" and not candidates,
            a_key=p.a.name,
            b_key=p.b.name,
            a_shape=p.a.shape,
            b_shape=p.b.shape,
            magnitude_key=p.mag.name if p.mag else None,
            magnitude_shape=p.mag.shape if p.mag else None,
            bias_key=p.bias.name if p.bias else None,
            e_key=p.e.name if p.e else None,
            num_experts=experts,
            parameters=candidates,
        )

    token_modules: dict[str, TokenModule] = {}
    for mod_name, info in sorted(tokens.items()):
        assert token_indices is not None
        indices = _indices_for(token_indices, mod_name)
        if indices is None:
            unmapped.append(info.name)
            continue
        token_modules[mod_name] = TokenModule(mod_name, info.name, indices, info.shape)

    saved_modules = {
        name: SavedModule(
            name=name,
            tensors=dict(sorted(t.items())),
            shapes={base: header.tensors[k].shape for base, k in sorted(t.items())},
            origin=saved_origin[name],
        )
        for name, t in sorted(saved.items())
    }
    lora_dtypes = Counter(
        header.tensors[k].dtype for p in parts.values() for k in p.keys
    ) or Counter(t.dtype for t in header.tensors.values())
    dtype = lora_dtypes.most_common(1)[0][0] if lora_dtypes else "F32"
    target_modules = config.get("target_modules")
    embedding_touched = any(m.kind == "embedding" for m in modules.values()) or any(
        _looks_like_vocab_layer(n) for n in saved_modules
    )
    options = option_findings(config, has_embedding_lora=embedding_touched)
    if adalora:
        options += _adalora_findings(config)
    return AdapterDescription(
        peft_type=peft_type,
        task_type=config.get("task_type"),
        base_model_name_or_path=config.get("base_model_name_or_path"),
        r=_recorded_rank(config, peft_type, token_modules),
        lora_alpha=float(config.get("lora_alpha", 8 if "r" in config else 0)),
        use_rslora=use_rslora,
        use_dora=use_dora,
        rank_pattern={}
        if adalora
        else {k: int(v) for k, v in (config.get("rank_pattern") or {}).items()},
        alpha_pattern={}
        if adalora
        else {k: float(v) for k, v in (config.get("alpha_pattern") or {}).items()},
        target_modules=target_modules
        if isinstance(target_modules, str)
        else list(target_modules or []),
        modules_to_save=modules_to_save,
        fan_in_fan_out=fan_in_fan_out,
        lora_bias=bool(config.get("lora_bias", False)),
        dtype=dtype,
        num_parameters=sum(t.numel for t in header.tensors.values()),
        size_bytes=size_bytes,
        config=config,
        modules=modules,
        saved_modules=saved_modules,
        tensors=dict(header.tensors),
        ignored_keys=tuple(sorted(ignored)),
        unmapped_keys=tuple(sorted(set(unmapped))),
        token_modules=token_modules,
        option_findings=tuple(options),
        target_parameters=tuple(target_parameters),
    )


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


def _indices_for(
    token_indices: dict[str, tuple[int, ...]], module: str
) -> tuple[int, ...] | None:
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


def _looks_like_vocab_layer(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return leaf in ("embed_tokens", "lm_head", "wte", "word_embeddings", "shared", "embed_out")


def _adalora_findings(config: dict[str, Any]) -> list[OptionFinding]:
    """AdaLoRA features loreg does not merge (PEFT's AdaLoRA rejects most of them too)."""
    found = []
    for key in ("use_dora", "lora_bias", "target_parameters", "trainable_token_indices"):
        if config.get(key):
            found.append(
                OptionFinding(key, "unsupported_option", f"{key} with AdaLoRA is not supported")
            )
    return found


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
