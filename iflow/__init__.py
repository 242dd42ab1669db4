"""iFlow: the coding agent that training and deployment both run (same loop, same prompts, same tools).

    from iflow import Agent, AgentConfig
    trajectory = await Agent(policy, sandbox_or_backend, AgentConfig()).run("Fix the failing test.")

`policy` is a TokenPolicy (exact token ids in and out, for training) or a MessagePolicy (an OpenAI-compatible HTTP
server); tools run in a ROCK sandbox (`rock.AsyncSandbox`) or a local directory (`LocalBackend`)."""
from iflow.agent import Agent
from iflow.backends import LocalBackend, RockBackend, ToolsBackend
from iflow.config import AgentConfig, ContextConfig
from iflow.policy import Completion, MessagePolicy, OpenAIChatPolicy, ReplayPolicy, SamplingParams, TokenPolicy
from iflow.trajectory import ToolCall, TrainingSequence, Trajectory, Turn, load_jsonl, save_jsonl, training_sequences

__all__ = ["Agent", "AgentConfig", "Completion", "ContextConfig", "LocalBackend", "MessagePolicy", "OpenAIChatPolicy",
           "ReplayPolicy", "RockBackend", "SamplingParams", "TokenPolicy", "ToolCall", "ToolsBackend",
           "TrainingSequence", "Trajectory", "Turn", "load_jsonl", "save_jsonl", "training_sequences"]
