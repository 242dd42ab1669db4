"""Errors a policy raises when the model cannot be asked: the agent ends the episode with outcome "error"."""
from __future__ import annotations


class PolicyError(RuntimeError):
    """The model server answered with an error, or not at all."""


class PolicyConnectionError(PolicyError):
    """Nothing answers at the configured address."""


class PolicyAuthError(PolicyError):
    """The server refused the API key."""
