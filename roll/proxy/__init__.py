"""The OpenAI-compatible model proxy: black-box agents talk to `/v1/...`; the proxy renders their requests into token
ids, asks the rollout engines, and records exactly which tokens were served, so the calls become token-exact
`Trajectory` records (roll/proxy/trajectory.py) that IPA trains on unchanged."""
from roll.proxy.config import ProxyConfig
from roll.proxy.records import ProxyCall
from roll.proxy.sessions import Session, SessionRegistry

__all__ = ["ProxyCall", "ProxyConfig", "Session", "SessionRegistry"]
