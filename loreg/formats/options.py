"""Which adapter_config.json fields loreg applies, which change nothing, which it refuses.

PEFT keeps adding options to ``LoraConfig``; several change what a merge must compute
(``use_qalora``, ``layer_replication``, the LoRA variants, initialisations that rewrite the
base weights). A merge that skipped such a field would silently produce another model, so
every field is in exactly one of three groups:

- **applied**: the merge engine implements it (``r``, ``lora_alpha``, ``rank_pattern``,
  ``use_dora``, ``trainable_token_indices``, ``target_parameters``, ...);
- **neutral**: it shapes training or loading only, never the merged weights
  (``lora_dropout``, ``task_type``, ``init_lora_weights=True``, AdaLoRA's schedule, ...);
- **refused** when set: a PEFT feature loreg does not merge; the finding says what to do.

A field in none of the groups is *unknown* (a newer PEFT, or a hand edit): refused when it
holds anything but an empty value (``null``, ``false``, ``0``, ``""``, ``[]``, ``{}``), since
loreg cannot know what it does. The groups were written against PEFT 0.21's ``LoraConfig``
``AdaLoraConfig`` and ``TrainableTokensConfig`` (docs/merging.md lists them).
"""

from __future__ import annotations

from typing import Any

from loreg.formats.types import OptionFinding

APPLIED = frozenset(
    {
        "peft_type",
        "r",
        "lora_alpha",
        "use_rslora",
        "rank_pattern",
        "alpha_pattern",
        "use_dora",
        "fan_in_fan_out",
        "lora_bias",
        "bias",
        "modules_to_save",
        "target_modules",
        "target_parameters",
        "trainable_token_indices",
        # AdaLoRA: the initial rank fixes the scale (alpha / init_r) of every module
        "init_r",
        # trainable-tokens adapters (peft_type TRAINABLE_TOKENS)
        "token_indices",
    }
)

NEUTRAL = frozenset(
    {
        "task_type",
        "base_model_name_or_path",
        "revision",
        "inference_mode",
        "auto_mapping",
        "peft_version",
        "lora_dropout",
        "init_weights",  # trainable tokens: how the rows started
        "init_lora_weights",  # see _INIT_REWRITES_BASE for the values that are refused
        "layers_to_transform",  # which modules were adapted: the tensors say it
        "layers_pattern",
        "exclude_modules",
        "megatron_core",
        "runtime_config",
        "qalora_group_size",  # meaningful only with use_qalora (refused)
        "ensure_weight_tying",  # see option_findings: refused where it would matter
        "eva_config",  # EVA only initialises A
        "loftq_config",  # see _INIT_REWRITES_BASE
        "corda_config",
        "lora_ga_config",
        # AdaLoRA's rank-allocation schedule (training only)
        "target_r",
        "tinit",
        "tfinal",
        "deltaT",
        "beta1",
        "beta2",
        "orth_reg_weight",
        "total_step",
    }
)

REFUSED: dict[str, str] = {
    "use_qalora": "QA-LoRA pools the layer's inputs in groups: its delta is not B @ A on the"
    " weight, so it cannot be merged into the base weights",
    "alora_invocation_tokens": "activated LoRA (aLoRA) applies only after its invocation tokens;"
    " PEFT itself cannot merge it",
    "layer_replication": "layer_replication stacks copies of base layers: the merged model would"
    " need another architecture, which loreg does not build",
    "megatron_config": "Megatron parallel layers are saved sharded; export the adapter from a"
    " single-process PEFT model first",
    "velora_config": "VeLoRA is a LoRA variant loreg does not merge",
    "monteclora_config": "MonteCLoRA is a LoRA variant loreg does not merge",
    "use_bdlora": "block-diagonal LoRA (BD-LoRA) is a LoRA variant loreg does not merge",
    "arrow_config": "Arrow routes between several LoRA experts per token; it cannot be merged"
    " into one set of weights",
    "kasa_config": "KaSA is a LoRA variant loreg does not merge",
}

# init_lora_weights values that rewrite the base weights when the adapter is created: the
# saved A/B are a delta on that rewritten base, not on the base model.
_INIT_REWRITES_BASE = ("pissa", "olora", "corda", "loftq", "lora_ga")
_INIT_VARIANTS = ("mica",)


def _empty(value: Any) -> bool:
    return value is None or value is False or value in (0, "", [], {})


def option_findings(config: dict[str, Any], *, has_embedding_lora: bool) -> list[OptionFinding]:
    """Every config field loreg would not apply, with what to do instead.

    ``has_embedding_lora``: the adapter has LoRA or saved copies on an embedding / output
    layer (where ``ensure_weight_tying`` changes which layers the adapter holds).
    """
    found: list[OptionFinding] = []
    for key in sorted(config):
        value = config[key]
        if key in APPLIED:
            continue
        if key in REFUSED:
            if not _empty(value):
                message = f"{key}={_short(value)}: {REFUSED[key]}"
                found.append(OptionFinding(key, "unsupported_option", message))
            continue
        if key in NEUTRAL:
            continue
        if not _empty(value):
            found.append(
                OptionFinding(
                    key,
                    "unknown_option",
                    f"adapter_config.json sets {key}={_short(value)}, an option loreg does not"
                    " know (written by a newer PEFT, or by hand); it may change what the adapter"
                    " computes, so loreg refuses it rather than merge without it. Remove it if"
                    " it is meaningless, or merge with a PEFT that knows it",
                )
            )
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(_INIT_REWRITES_BASE):
        found.append(
            OptionFinding(
                "init_lora_weights",
                "unsupported_option",
                f"init_lora_weights={init!r} rewrote the base weights when training started; the"
                " saved A and B are a delta on that rewritten base, not on the base model. Save"
                " the adapter with PEFT's save_pretrained(...,"
                " path_initial_model_for_weight_conversion=...) to turn it into a plain LoRA on"
                " the original base, and push that",
            )
        )
    elif isinstance(init, str) and init.lower().startswith(_INIT_VARIANTS):
        found.append(
            OptionFinding(
                "init_lora_weights",
                "unsupported_option",
                f"init_lora_weights={init!r} selects a LoRA variant loreg does not merge",
            )
        )
    bias = config.get("bias", "none")
    if bias not in (None, "none", "all", "lora_only"):
        found.append(
            OptionFinding("bias", "unsupported_option", f"bias={_short(bias)} is not a PEFT value")
        )
    if config.get("ensure_weight_tying") and has_embedding_lora:
        found.append(
            OptionFinding(
                "ensure_weight_tying",
                "unsupported_option",
                "ensure_weight_tying=true with LoRA or saved copies on embedding / output layers"
                " makes PEFT share one adapter between tied layers; loreg does not merge that"
                " yet. Train without it, or merge with PEFT",
            )
        )
    return found


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
