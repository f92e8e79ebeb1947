"""The RetNet, its checkpoints and tokenizers."""

from .retnet import PRESETS, RetNet, RetNetConfig, RetNetState, build_random, get_preset

__all__ = ["PRESETS", "RetNet", "RetNetConfig", "RetNetState", "build_random", "get_preset"]
