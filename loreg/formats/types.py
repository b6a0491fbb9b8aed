"""The descriptions the formats package produces and the merge engine consumes.

This module is the contract between ``loreg.formats`` (which fills these in from files
and headers) and ``loreg.merge`` / the services (which read them). Plain frozen
dataclasses, no behaviour beyond small derived properties.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

DType = str  # safetensors dtype string: "F32", "F16", "BF16", "I64", ...


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in a safetensors header; offsets are absolute in the file."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file (8 + header length + data_offsets[0])
    end: int  # absolute, exclusive

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """A parsed and validated safetensors header."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int  # absolute offset of the first tensor byte (8 + header length)
    file_size: int  # data_start + total tensor bytes


LoraKind = Literal["linear", "embedding", "conv", "parameter"]


@dataclass(frozen=True)
class LoraModule:
    """One LoRA-wrapped module, resolved the way PEFT resolves it.

    ``name`` is the module path in the *base checkpoint's* naming (PEFT's
    ``base_model.model.`` prefix removed), e.g. ``model.layers.0.self_attn.q_proj``;
    the base tensor it changes is ``name + ".weight"`` (``base_weight``).
    Keys (``a_key`` ...) are the exact keys in ``adapter_model.safetensors``.

    ``kind == "parameter"``: LoRA on a parameter (PEFT's ``target_parameters``, e.g. the
    fused 3-D expert weights of a mixture of experts). ``name`` is then the wrapper's path as
    PEFT saved it (``model.layers.0.mlp.experts``, plus one ``.base_layer`` per wrapper it is
    nested in when several parameters of one module are targeted); ``parameters`` are the
    parameter names the config's ``target_parameters`` allow for it, and which one it is
    follows from the base's shapes (``loreg.formats.targets``). ``lora_A`` is
    ``[r * num_experts, in]``, ``lora_B`` ``[out, r * num_experts]``.

    AdaLoRA modules carry ``e_key`` (``lora_E``, one singular value per rank): the delta is
    ``scale * B @ (A * E)``.
    """

    name: str
    kind: LoraKind
    r: int
    alpha: float
    scale: float  # alpha / r, or alpha / sqrt(r) with rslora
    fan_in_fan_out: bool  # base weight stored [in, out] (GPT-2 Conv1D): delta is transposed
    a_key: str  # lora_A.weight, or lora_embedding_A for embeddings
    b_key: str
    a_shape: tuple[int, ...]
    b_shape: tuple[int, ...]
    magnitude_key: str | None = None  # DoRA lora_magnitude_vector
    magnitude_shape: tuple[int, ...] | None = None
    bias_key: str | None = None  # lora_B.bias when lora_bias=True
    e_key: str | None = None  # AdaLoRA lora_E [r, 1]
    num_experts: int = 1  # parameter LoRA: lora_A holds r rows per expert
    parameters: tuple[str, ...] = ()  # parameter LoRA: candidate parameter names

    @property
    def base_weight(self) -> str:
        return f"{self.name}.weight"

    @property
    def module_path(self) -> str:
        """The adapted module's path without PEFT's nesting (``.base_layer`` suffixes)."""
        name = self.name
        while name.endswith(".base_layer"):
            name = name[: -len(".base_layer")]
        return name

    @property
    def nesting(self) -> int:
        """How many parameter wrappers this one sits inside (0: the outermost)."""
        return (len(self.name) - len(self.module_path)) // len(".base_layer")

    @property
    def base_bias(self) -> str:
        return f"{self.name}.bias"


@dataclass(frozen=True)
class SavedModule:
    """A ``modules_to_save`` module: PEFT saved the whole module, which replaces the base's.

    ``tensors`` maps the base tensor name (``score.weight``) to the adapter key holding it.
    """

    name: str
    tensors: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    # "modules_to_save", or "base_layer": PEFT saved the wrapped layer's own weights (it does
    # so for embedding/lm_head targets, e.g. after the vocabulary grew); both replace the base.
    origin: str = "modules_to_save"


@dataclass(frozen=True)
class TokenModule:
    """PEFT's trainable tokens (``trainable_token_indices``): rows of an embedding replaced.

    ``name`` is the embedding (or tied output) layer's path in base naming; the base tensor is
    ``name + ".weight"``, whose rows ``indices`` are replaced by the rows of ``key``
    (``[len(indices), dim]``), in order, as PEFT's ``index_copy`` does on merge.
    """

    name: str
    key: str
    indices: tuple[int, ...]
    shape: tuple[int, ...]

    @property
    def base_weight(self) -> str:
        return f"{self.name}.weight"


@dataclass(frozen=True)
class OptionFinding:
    """A config field loreg does not apply: ``code`` is ``unsupported_option`` (a PEFT
    feature loreg does not merge) or ``unknown_option`` (a field no PEFT release it knows
    writes)."""

    field: str
    code: str
    message: str


@dataclass(frozen=True)
class AdapterDescription:
    """Everything loreg knows about a PEFT LoRA adapter without loading its tensors."""

    peft_type: str
    task_type: str | None
    base_model_name_or_path: str | None
    r: int
    lora_alpha: float
    use_rslora: bool
    use_dora: bool
    rank_pattern: dict[str, int]
    alpha_pattern: dict[str, float]
    target_modules: list[str] | str
    modules_to_save: list[str]
    fan_in_fan_out: bool
    lora_bias: bool
    dtype: DType  # the dominant dtype of the LoRA tensors
    num_parameters: int
    size_bytes: int  # of adapter_model.safetensors
    config: dict[str, Any]  # adapter_config.json as read
    modules: dict[str, LoraModule]  # by module name
    saved_modules: dict[str, SavedModule] = field(default_factory=dict)
    tensors: dict[str, TensorInfo] = field(default_factory=dict)  # the adapter file's header
    # Keys PEFT writes but that change nothing (``original_module`` copies of the base).
    ignored_keys: tuple[str, ...] = ()
    # Keys that are none of the above: compatibility reports each as a problem.
    unmapped_keys: tuple[str, ...] = ()
    token_modules: dict[str, TokenModule] = field(default_factory=dict)
    # Config fields whose meaning loreg does not apply: every path refuses the adapter.
    option_findings: tuple[OptionFinding, ...] = ()
    target_parameters: tuple[str, ...] = ()

    def saved_shape(self, tensor: str) -> tuple[int, ...] | None:
        """The shape of base tensor ``tensor`` as modules_to_save replace it, if they do."""
        return next(
            (sm.shapes[tensor] for sm in self.saved_modules.values() if tensor in sm.shapes),
            None,
        )

    @property
    def saved_tensors(self) -> set[str]:
        """The base tensors that modules_to_save replace."""
        return {t for sm in self.saved_modules.values() for t in sm.shapes}


@dataclass(frozen=True)
class BaseManifest:
    """A base model's tensors, from headers alone, plus its fingerprints.

    ``fingerprint`` is docs/design.md §3's sha256 over sorted (name, dtype, shape,
    sha256 of bytes); ``None`` when only headers were read. ``structure_hash`` covers names,
    dtypes and shapes only.
    """

    tensors: dict[str, tuple[DType, tuple[int, ...]]]
    structure_hash: str
    fingerprint: str | None = None
    num_parameters: int = 0
    size_bytes: int = 0
    files: dict[str, str] = field(default_factory=dict)  # tensor name -> file (relative) holding it
    # Tied weights the checkpoint omits: ``lm_head.weight`` -> ``model.embed_tokens.weight``
    # (from config.json's ``tie_word_embeddings``); the alias is not in ``tensors``.
    aliases: dict[str, str] = field(default_factory=dict)
    # config.json's ``model_type`` when known: picks the checkpoint conversion rules that map
    # a model's fused parameters onto the tensors the checkpoint stores.
    model_type: str | None = None
