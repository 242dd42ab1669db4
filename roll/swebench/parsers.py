"""Test-log parsers: the text between the start and end markers in, `{test name: status}` out.

Each parser reproduces the behaviour of the official parser of the same name (swebench 5.x), quirks included, since
FAIL_TO_PASS / PASS_TO_PASS names in the datasets were produced by them: pytest's `-rA` summary lines (with the
`[param]` normalisation of the `_options` flavour and the escape-stripping of `_v2`), Django's `test ... ok` lines,
SymPy's `bin/test` lines, matplotlib and seaborn."""
from __future__ import annotations

import re
from collections.abc import Callable

from roll.swebench.constants import TestStatus

Parser = Callable[[str], dict[str, str]]

STATUSES = tuple(s.value for s in TestStatus)
PASSED, FAILED, SKIPPED, ERROR = (TestStatus.PASSED.value, TestStatus.FAILED.value, TestStatus.SKIPPED.value,
                                  TestStatus.ERROR.value)
_SKIP_COUNT = re.compile(r"^\[\d+\]$")  # `SKIPPED [3] file.py:12: reason`: [3] is a count, not a test
_OPTION = re.compile(r"(.*?)\[(.*)\]")
_ANSI_COLOUR = re.compile(r"\[(\d+)m")
_CONTROL = str.maketrans("", "", "".join(chr(c) for c in range(1, 32)))
_SYMPY_FAILURE_HEADER = re.compile(r"(_*) (.*)\.py:(.*) (_*)")
_DJANGO_PASS_SUFFIXES = (" ... ok", " ... OK", " ...  OK")
_DJANGO_SPLIT_PASSES = (
    re.compile(r"^(.*?)\s\.\.\.\sTesting\ against\ Django\ installed\ in\ ((?s:.*?))\ silenced\)\.\nok$", re.MULTILINE),
    re.compile(r"^(.*?)\s\.\.\.\sInternal\ Server\ Error:\ \/(.*)\/\nok$", re.MULTILINE),
    re.compile(r"^(.*?)\s\.\.\.\sSystem check identified no issues \(0 silenced\)\nok$", re.MULTILINE),
)


def _status_line(line: str) -> bool:
    return line.startswith(STATUSES)


def _summary_fields(line: str) -> list[str] | None:
    """The whitespace fields of a `-rA` summary line, or None when it names no test."""
    if line.startswith(FAILED):
        line = line.replace(" - ", " ")
    fields = line.split()
    if len(fields) < 2 or (fields[0] == SKIPPED and _SKIP_COUNT.match(fields[1])):
        return None
    return fields


def parse_log_pytest(log: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in log.split("\n"):
        if _status_line(line) and (fields := _summary_fields(line)):
            result[fields[1]] = fields[0]
    return result


def _normalise_option(name: str) -> str:
    match = _OPTION.search(name)
    if not match:
        return name
    main, option = match.groups()
    if option.startswith("/") and not option.startswith("//") and "*" not in option:
        option = "/" + option.split("/")[-1]  # keep only the file name of a path parameter
    return f"{main}[{option}]"


def parse_log_pytest_options(log: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in log.split("\n"):
        if _status_line(line) and (fields := _summary_fields(line)):
            result[_normalise_option(fields[1])] = fields[0]
    return result


def parse_log_pytest_v2(log: str) -> dict[str, str]:
    """pytest summaries with colour codes and control characters removed; also `name STATUS` (older pytest)."""
    result: dict[str, str] = {}
    for line in log.split("\n"):
        line = _ANSI_COLOUR.sub("", line).translate(_CONTROL)
        if _status_line(line):
            if line.startswith(FAILED):
                line = line.split(" - ", 1)[0]
            fields = line.split()
            if len(fields) >= 2 and not (fields[0] == SKIPPED and _SKIP_COUNT.match(fields[1])):
                result[" ".join(fields[1:])] = fields[0]
        elif line.endswith(STATUSES):
            fields = line.split()
            if len(fields) >= 2:
                result[" ".join(fields[:-1])] = fields[-1]
    return result


def parse_log_matplotlib(log: str) -> dict[str, str]:
    return parse_log_pytest(log.replace("MouseButton.LEFT", "1").replace("MouseButton.RIGHT", "3"))


def parse_log_seaborn(log: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in log.split("\n"):
        fields = line.split()
        if len(fields) < 2:
            continue
        if line.startswith(FAILED):
            result[fields[1]] = FAILED
        elif f" {PASSED} " in line:
            if fields[1] == PASSED:
                result[fields[0]] = PASSED
        elif line.startswith(PASSED):
            result[fields[1]] = PASSED
    return result


def parse_log_django(log: str) -> dict[str, str]:
    """Django's runner at verbosity 2: `test_x (module.Class) ... ok|FAIL|ERROR|skipped`, `FAIL: name`, and a
    test whose `ok` lands on a later line after extra output."""
    result: dict[str, str] = {}
    previous: str | None = None
    for raw in log.split("\n"):
        line = raw.strip()
        if "--version is equivalent to version" in line:
            result["--version is equivalent to version"] = PASSED
        if " ... " in line:
            previous = line.split(" ... ")[0]
        for suffix in _DJANGO_PASS_SUFFIXES:
            if line.endswith(suffix):
                # django__django-7188 prints a migration line in front of the test's own line
                if line.startswith("Applying sites.0002_alter_domain_unique...test_no_migrations"):
                    line = line.split("...", 1)[-1].strip()
                result[line.rsplit(suffix, 1)[0]] = PASSED
                break
        if " ... skipped" in line:
            result[line.split(" ... skipped")[0]] = SKIPPED
        if line.endswith(" ... FAIL"):
            result[line.split(" ... FAIL")[0]] = FAILED
        if line.startswith("FAIL:") and len(line.split()) > 1:
            result[line.split()[1].strip()] = FAILED
        if line.endswith(" ... ERROR"):
            result[line.split(" ... ERROR")[0]] = ERROR
        if line.startswith("ERROR:") and len(line.split()) > 1:
            result[line.split()[1].strip()] = ERROR
        if line.startswith("ok") and previous is not None:
            result[previous] = PASSED
    for pattern in _DJANGO_SPLIT_PASSES:
        for match in pattern.finditer(log):
            result[match.group(1)] = PASSED
    return result


def parse_log_sympy(log: str) -> dict[str, str]:
    """SymPy's bin/test: `test_name ok|F|E` lines, and `___ path.py:test_name ___` failure headers."""
    result: dict[str, str] = {}
    for match in _SYMPY_FAILURE_HEADER.findall(log):
        result[f"{match[1]}.py:{match[2]}"] = FAILED
    for raw in log.split("\n"):
        line = raw.strip()
        if not line.startswith("test_"):
            continue
        if line.endswith(" E"):
            result[line.split()[0]] = ERROR
        if line.endswith(" F"):
            result[line.split()[0]] = FAILED
        if line.endswith(" ok"):
            result[line.split()[0]] = PASSED
    return result


PARSERS: dict[str, Parser] = {
    "parse_log_pytest": parse_log_pytest,
    "parse_log_pytest_options": parse_log_pytest_options,
    "parse_log_pytest_v2": parse_log_pytest_v2,
    "parse_log_django": parse_log_django,
    "parse_log_sympy": parse_log_sympy,
    "parse_log_matplotlib": parse_log_matplotlib,
    "parse_log_seaborn": parse_log_seaborn,
}
for _alias in ("astroid", "flask", "marshmallow", "pvlib", "pyvista", "sqlfluff", "xarray"):
    PARSERS[f"parse_log_{_alias}"] = parse_log_pytest
for _alias in ("pydicom", "requests", "pylint"):
    PARSERS[f"parse_log_{_alias}"] = parse_log_pytest_options
for _alias in ("astropy", "scikit", "sphinx"):
    PARSERS[f"parse_log_{_alias}"] = parse_log_pytest_v2


class UnknownParser(KeyError):
    pass


def get_parser(name: str) -> Parser:
    try:
        return PARSERS[name]
    except KeyError:
        raise UnknownParser(f"no log parser {name!r}; known: {', '.join(sorted(PARSERS))}") from None
