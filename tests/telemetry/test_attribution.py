"""Attribution by process ancestry and start time (never by the agent-writable ROCK_CMD), the background flag,
and one event per rule and command whatever the number of sources."""
from rock.records import CommandRecord
from rock.telemetry.attribution import Attribution, Deduplicator
from rock.telemetry.detectors import BackgroundCpuDetector, PtraceJudge
from rock.telemetry.events import Observation, make_event

SHELL, OTHER_SHELL = 100, 200


def record(id, start, duration, session="default", turn=None, tag=""):
    return CommandRecord(id=id, sandbox="rock-x", session=session, command="c", started_at=start, duration=duration,
                         exit_code=0, timed_out=False, output_bytes=0, cmd_tag=tag, tags={"turn": turn})


RECORDS = [record(0, 10.0, 1.0, turn=0, tag="aaa"), record(1, 20.0, 5.0, turn=1, tag="bbb"),
           record(2, 21.0, 1.0, session="other", turn=1, tag="ccc")]
SHELLS = {SHELL: "default", OTHER_SHELL: "other"}


def exec_obs(pid, ppid, at, tag=""):
    return Observation(kind="exec", time=at, sandbox="rock-x", pid=pid, ppid=ppid, cmd_tag=tag, argv=["x"])


def event_of(pid, at, tag=""):
    return make_event("credential.access", "secret-files", "open", time=at, sandbox="rock-x", pid=pid,
                      detail={"cmd_tag": tag})


def test_a_forged_rock_cmd_does_not_move_an_event_to_an_earlier_command():
    attribution = Attribution()
    attribution.lineage.learn(exec_obs(300, SHELL, 20.5, tag="aaa"))  # the agent exported turn 0's tag
    event = event_of(300, 20.6, tag="aaa")
    assert attribution.attribute(event, RECORDS, SHELLS).id == 1 and not event.background


def test_a_process_left_running_is_background_on_its_origin_not_on_the_command_running_now():
    attribution = Attribution()
    attribution.lineage.learn(exec_obs(301, SHELL, 10.5))  # started by command 0
    attribution.lineage.learn(exec_obs(302, 301, 22.0))  # its child, later, while command 1 runs
    event = event_of(302, 22.1)
    assert attribution.attribute(event, RECORDS, SHELLS).id == 0 and event.background


def test_ancestry_picks_the_session_when_two_commands_overlap():
    attribution = Attribution()
    attribution.lineage.learn(exec_obs(303, OTHER_SHELL, 21.2))
    event = event_of(303, 21.5)
    assert attribution.attribute(event, RECORDS, SHELLS).id == 2 and not event.background


def test_between_commands_without_ancestry_is_background_on_the_last_command():
    event = make_event("compute.anomaly", "idle-cpu", "busy", time=15.0, sandbox="rock-x", source="cgroup")
    assert Attribution().attribute(event, RECORDS, SHELLS).id == 0 and event.background


def test_command_text_and_ebpf_sightings_of_one_rule_are_one_event_with_both_sources():
    dedupe = Deduplicator()
    text = make_event("credential.access", "secret-files-cmd", "x", source="command", command_record=1)
    traced = make_event("credential.access", "secret-files-cmd", "x", source="ebpf", command_record=1)
    again = make_event("credential.access", "secret-files-cmd", "x", source="ebpf", command_record=1)
    stored = text.model_dump()
    assert dedupe.admit(text, stored) and not dedupe.admit(traced) and not dedupe.admit(again)
    assert text.sources == ["command", "ebpf"] and text.detail["count"] == 3 and stored["sources"] == text.sources
    assert text.source == stored["source"] == "ebpf"  # the strongest witness names the merged event
    assert dedupe.admit(make_event("credential.access", "secret-files-cmd", "x", source="ebpf", command_record=2))


def test_background_cpu_detector_catches_a_throttled_process_but_not_a_foreground_one():
    detector = BackgroundCpuDetector(cpu_seconds=2.0, window=30.0)
    fired = []
    for second in range(12):  # 0.25 cores each, background; 0.9 cores foreground
        fired += detector.sample(float(second), {"miner": (0.25 * second, True), "build": (0.9 * second, False)})
    assert [key for key, _ in fired] == ["miner"]


def test_ptrace_of_an_own_child_is_a_debugger_and_of_no_child_an_escape():
    judge = PtraceJudge(delay=0.5)
    debugger = Observation(kind="syscall", syscall="ptrace", time=1.0, sandbox="rock-x", pid=10, ppid=SHELL)
    traceme = Observation(kind="syscall", syscall="ptrace", time=1.0, sandbox="rock-x", pid=11, ppid=10)
    attacker = Observation(kind="syscall", syscall="ptrace", time=1.0, sandbox="rock-x", pid=12, ppid=SHELL)
    assert all(judge.observe(o) for o in (debugger, traceme, attacker))
    assert judge.judge(1.1, {11: 10, 10: SHELL, 12: SHELL}) == []  # too early to tell
    events = judge.judge(2.0, {11: 10, 10: SHELL, 12: SHELL})
    assert [(e.rule, e.pid, e.category) for e in events] == [("ptrace-attach", 12, "sandbox.escape")]


def test_a_job_started_just_before_its_command_ended_is_not_put_on_the_next_command():
    records = [record(0, 10.0, 0.01, turn=0), record(1, 10.04, 1.0, turn=1)]  # back-to-back commands
    attribution = Attribution()
    attribution.lineage.learn(exec_obs(400, SHELL, 10.008))
    event = event_of(400, 10.5)
    assert attribution.attribute(event, records, SHELLS).id == 0 and event.background


def test_an_event_of_the_command_still_running_waits_for_its_record():
    event = event_of(999, 30.0)  # after every record, from a process with no known ancestry
    assert Attribution().attribute(event, RECORDS, SHELLS, wait_for_running=True) is None
    assert Attribution().attribute(event, RECORDS, SHELLS).id == 2 and event.background  # final: the latest one
