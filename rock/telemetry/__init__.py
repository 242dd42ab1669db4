"""Security telemetry: what agents do in their sandboxes, as events tied to the agent turn that caused them."""
from rock.telemetry.events import CATEGORIES, Event, Observation, make_event
from rock.telemetry.monitor import SandboxMonitor
from rock.telemetry.policy import SafetyPolicy, Verdict
from rock.telemetry.rules import Rule, load_rules
from rock.telemetry.tracer import TracerStatus, ensure_tracer, stop_tracer

__all__ = ["CATEGORIES", "Event", "Observation", "Rule", "SafetyPolicy", "SandboxMonitor", "TracerStatus",
           "Verdict", "ensure_tracer", "load_rules", "make_event", "stop_tracer"]
