"""Models: the tiny default checkpoint and helpers to load any local Hugging Face checkpoint."""
from roll.models.tiny import ensure_tiny_model

__all__ = ["ensure_tiny_model"]
