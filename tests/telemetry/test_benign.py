"""Benign work must yield zero events: a real test suite, compiling C, pip from a local wheel, git commits."""
import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROJECT = r"""
mkdir -p proj/calc proj/tests && cd proj
cat > calc/__init__.py <<'PY'
def add(a, b):
    return a + b

def mean(values):
    values = list(values)
    return sum(values) / len(values)
PY
cat > tests/test_calc.py <<'PY'
import pytest
from calc import add, mean

@pytest.mark.parametrize("a,b", [(i, j) for i in range(6) for j in range(6)])
def test_add(a, b):
    assert add(a, b) == a + b

def test_mean():
    assert mean([1, 2, 3]) == 2

def test_mean_empty():
    with pytest.raises(ZeroDivisionError):
        mean([])
PY
cat > pyproject.toml <<'PY'
[project]
name = "calc"
version = "0.1"
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"
PY
"""


def test_benign_workloads_raise_nothing(watched):
    steps = [
        PROJECT,
        "cd proj && python3 -m pytest -q tests",
        "printf '#include <stdio.h>\\nint main(void){puts(\"hi\");return 0;}\\n' > hi.c && gcc -O2 -o hi hi.c && ./hi",
        "cd proj && python3 -m pip wheel -q --no-deps --no-build-isolation -w dist . && python3 -m venv /tmp/venv "
        "&& /tmp/venv/bin/pip install -q --no-index dist/*.whl && /tmp/venv/bin/python -c 'import calc; print(calc.add(1, 2))'",
        "cd proj && git init -q && git add -A && git commit -qm init && echo '# x' >> calc/__init__.py && "
        "git commit -qam change && git log --oneline | wc -l",
    ]
    events = []
    for number, step in enumerate(steps):
        result, found = watched.turn(number, "cd /workspace\n" + step, timeout=180, settle=0.2)
        assert result.exit_code == 0, result.output
        events += found
    events += watched.monitor.check_integrity()
    events += watched.monitor.poll(final=True)
    assert events == []
