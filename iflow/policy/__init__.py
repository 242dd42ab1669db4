from iflow.policy.base import Completion, MessagePolicy, SamplingParams, TokenPolicy
from iflow.policy.errors import PolicyAuthError, PolicyConnectionError, PolicyError
from iflow.policy.openai_http import OpenAIChatPolicy
from iflow.policy.replay import ReplayPolicy

__all__ = ["Completion", "MessagePolicy", "OpenAIChatPolicy", "PolicyAuthError", "PolicyConnectionError",
           "PolicyError", "ReplayPolicy", "SamplingParams", "TokenPolicy"]
