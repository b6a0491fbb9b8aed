"""Which tensor of an adapter file is what: PEFT's key forms, sorted by what they hold.

Keys are interpreted the way PEFT writes them:

- ``base_model.model.`` prefix (absent in some third-party exports; then names are used as-is);
- ``<module>.lora_A[.<adapter>].weight`` / ``lora_B`` (+ ``lora_B[.<adapter>].bias`` with
  ``lora_bias``), ``<module>.lora_embedding_A[.<adapter>]`` / ``_B`` for embeddings,
  ``<module>.lora_magnitude_vector[.<adapter>][.weight]`` for DoRA;
- AdaLoRA: ``<module>.lora_A`` / ``lora_B`` / ``lora_E`` (no ``.weight``);
- ``<module>.base_layer.<param>``: the wrapped layer saved whole (PEFT does this for
  embedding / lm_head targets, e.g. after the vocabulary grew);
- ``<module>.token_adapter.trainable_tokens_delta``: trainable tokens
  (``trainable_token_indices``), the new values of some embedding rows;
- ``<embedding or output layer>.weight`` without a wrapper: PEFT saves those whole when the
  vocabulary was resized during training, and loading puts them in place;
- with ``bias="all"`` / ``"lora_only"``: ``<module>[.base_layer].bias``, trained biases that
  replace the base's;
- ``target_parameters``: LoRA on a module's parameter (``<module>[.base_layer...].lora_A``);
  which parameter each nested wrapper adapts is settled against the base
  (``loreg.formats.targets``);
- ``modules_to_save``: ``<module>.<param>`` (current PEFT), or
  ``<module>.modules_to_save[.<adapter>].<param>`` (older PEFT; current PEFT writes both, with
  equal values, when it saves resized embeddings whole: the plain key wins, the other is
  ignored); ``<module>.original_module.<param>`` are copies of the base and are ignored.

A key that is none of these is *unmapped*: the compatibility check refuses the adapter
rather than merge it without that tensor.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from loreg.formats.types import LoraKind, SafetensorsHeader, TensorInfo

PEFT_PREFIX = "base_model.model."

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
_VOCAB_LAYERS = ("embed_tokens", "lm_head", "wte", "word_embeddings", "shared", "embed_out")


@dataclass(frozen=True)
class KeyRules:
    """What the config says about the keys to expect."""

    adalora: bool = False
    trainable_tokens: bool = False
    trains_biases: bool = False  # bias="all" / "lora_only"
    modules_to_save: Sequence[str] = ()


@dataclass
class LoraParts:
    """The tensors found for one LoRA module (a pair, maybe with DoRA, bias or AdaLoRA's E)."""

    a: TensorInfo | None = None
    b: TensorInfo | None = None
    e: TensorInfo | None = None
    kind: LoraKind = "linear"
    mag: TensorInfo | None = None
    bias: TensorInfo | None = None
    keys: list[str] = field(default_factory=list)


@dataclass
class SortedKeys:
    """An adapter file's keys by what they hold."""

    lora: dict[str, LoraParts] = field(default_factory=dict)  # by module name
    saved: dict[str, dict[str, str]] = field(default_factory=dict)  # module -> {tensor: key}
    saved_origin: dict[str, str] = field(default_factory=dict)  # module -> how it was saved
    tokens: dict[str, TensorInfo] = field(default_factory=dict)  # by layer name
    ignored: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)


def sort_keys(header: SafetensorsHeader, rules: KeyRules) -> SortedKeys:
    """Sort every key of ``header`` into LoRA parts, saved modules, token rows, ignored
    copies or unmapped keys."""
    found = SortedKeys()
    has_prefix = any(k.startswith(PEFT_PREFIX) for k in header.tensors)
    for key, info in header.tensors.items():
        if has_prefix and not key.startswith(PEFT_PREFIX):
            found.unmapped.append(key)
            continue
        name = key.removeprefix(PEFT_PREFIX) if has_prefix else key
        taken = (
            _lora_key(found, key, name, info, rules)
            or _token_key(found, name, info, rules)
            or _saved_key(found, key, name, rules)
        )
        if not taken:
            found.unmapped.append(key)
    return found


def _lora_key(found: SortedKeys, key: str, name: str, info: TensorInfo, rules: KeyRules) -> bool:
    if rules.adalora:
        m = _ADALORA_KEY.match(name)
        if m is None:
            return False
        p = found.lora.setdefault(m["module"], LoraParts())
        p.keys.append(key)
        setattr(p, m["which"][-1].lower(), info)
        return True
    m = _LORA_KEY.match(name)
    if m is None:
        return False
    p = found.lora.setdefault(m["module"], LoraParts())
    p.keys.append(key)
    if m["ab"]:
        if m["param"] == "bias":
            if m["ab"] == "lora_B":
                p.bias = info
            else:
                found.unmapped.append(key)
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
    return True


def _token_key(found: SortedKeys, name: str, info: TensorInfo, rules: KeyRules) -> bool:
    m = _TOKENS.match(name)
    if m is None or not rules.trainable_tokens:
        return False
    found.tokens[m["module"]] = info
    return True


def _saved_key(found: SortedKeys, key: str, name: str, rules: KeyRules) -> bool:
    """Whole tensors: base-layer copies, modules_to_save, resized vocabulary layers, trained
    biases (and the ``original_module`` copies that change nothing)."""
    if _ORIGINAL.match(name):
        found.ignored.append(key)
        return True
    m = _BASE_LAYER.match(name)
    if m:
        module = m["module"].removesuffix(".token_adapter")
        origin = "bias" if rules.trains_biases and m["param"] == "bias" else "base_layer"
        found.saved.setdefault(module, {})[f"{module}.{m['param']}"] = key
        found.saved_origin[module] = origin
        return True
    m = _MTS.match(name)
    if m:
        # Older PEFT's form; newer PEFT writes it too, next to the plain key, when it
        # saves resized embeddings whole: then the two hold the same values.
        tname = f"{m['module']}.{m['param']}"
        if tname in found.saved.get(m["module"], {}):
            found.ignored.append(key)
        else:
            found.saved.setdefault(m["module"], {})[tname] = key
            found.saved_origin.setdefault(m["module"], "modules_to_save")
        return True
    owner = _saved_module_for(rules.modules_to_save, name)
    if owner is not None:
        previous = found.saved.setdefault(owner, {}).get(name)
        if previous is not None:
            found.ignored.append(previous)
        found.saved[owner][name] = key
        found.saved_origin.setdefault(owner, "modules_to_save")
        return True
    module, _, param = name.rpartition(".")
    if param == "weight" and looks_like_vocab_layer(module):
        # PEFT saves embedding / output layers whole when the vocabulary was resized
        # (save_embedding_layers); loading puts them in place of the base's
        found.saved.setdefault(module, {})[name] = key
        found.saved_origin.setdefault(module, "embedding_layer")
        return True
    if rules.trains_biases and name.endswith(".bias") and "." in name:
        # bias="all" / "lora_only": PEFT trained and saved these biases; they replace the base's
        module = name.rsplit(".", 1)[0]
        found.saved.setdefault(module, {})[name] = key
        found.saved_origin.setdefault(module, "bias")
        return True
    return False


def _saved_module_for(modules_to_save: Sequence[str], name: str) -> str | None:
    """The longest dotted prefix of ``name`` that ``modules_to_save`` selects, if any."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        if any(prefix == m or prefix.endswith("." + m) for m in modules_to_save):
            return prefix
    return None


def looks_like_vocab_layer(name: str) -> bool:
    """An input embedding or output layer, by the names transformers gives them."""
    return name.rsplit(".", 1)[-1] in _VOCAB_LAYERS
