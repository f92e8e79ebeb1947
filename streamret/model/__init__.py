"""The RetNet, its checkpoints and tokenizers."""

from .checkpoint import CheckpointError, load_checkpoint, model_fingerprint, model_from_state_dict, save_checkpoint
from .retnet import PRESETS, RetNet, RetNetConfig, RetNetState, build_random, get_preset
from .spec import LoadedModel, load_model
from .tokenizer import ByteTokenizer, HFTokenizer, Tokenizer

__all__ = [
    "PRESETS",
    "ByteTokenizer",
    "CheckpointError",
    "HFTokenizer",
    "LoadedModel",
    "RetNet",
    "RetNetConfig",
    "RetNetState",
    "Tokenizer",
    "build_random",
    "get_preset",
    "load_checkpoint",
    "load_model",
    "model_fingerprint",
    "model_from_state_dict",
    "save_checkpoint",
]
