"""The names of the combination methods and output dtypes, and the options that tune them.

This is the one place they are spelled: the command line's choices, the API's job schemas,
the worker and the merge engine all take them from here. It imports no torch, so a client
that only pushes and pulls can name a method without loading the tensor code
(``loreg.merge.methods`` defines what each method computes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from loreg.errors import InvalidInput

Method = Literal["linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune"]
METHODS: tuple[Method, ...] = get_args(Method)
#: Methods that add the weighted deltas as they are.
SUM_METHODS: frozenset[str] = frozenset({"linear", "cat", "svd"})
#: Methods that keep a ``density`` fraction of each delta.
DENSITY_METHODS: frozenset[str] = frozenset({"ties", "dare_linear", "dare_ties", "magnitude_prune"})
#: Methods whose combination into a new adapter is exact (by concatenating the factors).
EXACT_METHODS: frozenset[str] = frozenset({"linear", "cat"})

SignMethod = Literal["total", "frequency"]
SIGN_METHODS: tuple[SignMethod, ...] = get_args(SignMethod)

OutputDType = Literal["float16", "bfloat16", "float32"]
#: The dtypes an output may be cast to, with their safetensors names.
OUTPUT_DTYPES: dict[str, str] = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}
DTYPES: tuple[OutputDType, ...] = get_args(OutputDType)


@dataclass(frozen=True)
class MethodOptions:
    """How several adapters' deltas combine (the names of PEFT's ``add_weighted_adapter``).

    Checked when made, so a bad value is refused before any tensor is read.
    """

    method: Method = "linear"
    density: float | None = None
    majority_sign_method: SignMethod = "total"
    svd_rank: int | None = None
    svd_clamp: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidInput(
                f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}"
            )
        if self.method in DENSITY_METHODS:
            if self.density is None:
                raise InvalidInput(f"method {self.method!r} needs a density in (0, 1]")
            if not 0.0 < self.density <= 1.0:
                raise InvalidInput(f"density must be in (0, 1], got {self.density}")
        if self.majority_sign_method not in SIGN_METHODS:
            raise InvalidInput("majority_sign_method must be 'total' or 'frequency'")
        if self.svd_rank is not None and self.svd_rank < 1:
            raise InvalidInput("svd_rank must be at least 1")
        if self.svd_clamp is not None and not 0.0 < self.svd_clamp <= 1.0:
            raise InvalidInput(f"svd_clamp must be a quantile in (0, 1], got {self.svd_clamp}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MethodOptions:
        """The options named in a job's parameters; absent or null ones take their default."""
        given = {f.name: params[f.name] for f in fields(cls) if params.get(f.name) is not None}
        return cls(**given)

    @property
    def exact(self) -> bool:
        """Whether combining into a new adapter keeps the deltas exactly."""
        return self.method in EXACT_METHODS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The option names, as job parameters and lineage records spell them.
OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in fields(MethodOptions))
