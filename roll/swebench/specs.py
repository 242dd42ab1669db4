"""What an instance needs to be evaluated, resolved from its row and the repository specs: the image, the log parser,
the grading type and (for classic rows that carry no eval script) how to run the tests.

swebench 5.x rows carry `image`, `eval_script`, `log_parser` and `eval_type` themselves, and those win. Classic rows get
them from the table below: the test commands and environment steps of the official images (a conda env `testbed`
under /opt/miniconda3, the repository at /testbed)."""
from __future__ import annotations

from dataclasses import dataclass, field

from roll.swebench.constants import DEFAULT_ARCH, DEFAULT_NAMESPACE, DEFAULT_TAG, FAIL_ONLY_REPOS, EvalType
from roll.swebench.dataset import SWEInstance

CONDA_ACTIVATE = ("source /opt/miniconda3/bin/activate", "conda activate testbed")

PYTEST = "pytest --no-header -rA --tb=no -p no:cacheprovider"
PYTEST_RA = "pytest -rA"
ASTROPY = "pytest -rA -vv -o console_output_style=classic --tb=no"
DJANGO = "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1"
SEABORN = "pytest --no-header -rA"
SPHINX = "tox --current-env -epy39 -v --"
SYMPY = "PYTHONWARNINGS='ignore::UserWarning,ignore::SyntaxWarning' bin/test -C --verbose"
DJANGO_LOCALE = ("sed -i '/en_US.UTF-8/s/^# //g' /etc/locale.gen && locale-gen", "export LANG=en_US.UTF-8",
                 "export LANGUAGE=en_US:en", "export LC_ALL=en_US.UTF-8")


@dataclass(frozen=True)
class RepoSpec:
    test_cmd: str
    log_parser: str
    setup: tuple[str, ...] = CONDA_ACTIVATE  # run before anything else (and again before the tests)
    eval_commands: tuple[str, ...] = ()  # repository-specific steps after entering /testbed
    directives: str = "files"  # files | django (dotted test modules)


REPO_SPECS: dict[str, RepoSpec] = {
    "astropy/astropy": RepoSpec(ASTROPY, "parse_log_astropy"),
    "django/django": RepoSpec(DJANGO, "parse_log_django", eval_commands=DJANGO_LOCALE, directives="django"),
    "marshmallow-code/marshmallow": RepoSpec(PYTEST, "parse_log_marshmallow"),
    "matplotlib/matplotlib": RepoSpec(PYTEST, "parse_log_matplotlib"),
    "mwaskom/seaborn": RepoSpec(SEABORN, "parse_log_seaborn"),
    "pallets/flask": RepoSpec(PYTEST, "parse_log_flask"),
    "psf/requests": RepoSpec(PYTEST, "parse_log_requests"),
    "pvlib/pvlib-python": RepoSpec(PYTEST, "parse_log_pvlib"),
    "pydata/xarray": RepoSpec(PYTEST, "parse_log_xarray"),
    "pydicom/pydicom": RepoSpec(PYTEST, "parse_log_pydicom"),
    "pylint-dev/astroid": RepoSpec(PYTEST, "parse_log_astroid"),
    "pylint-dev/pylint": RepoSpec(PYTEST, "parse_log_pylint"),
    "pytest-dev/pytest": RepoSpec(PYTEST_RA, "parse_log_pytest"),
    "pyvista/pyvista": RepoSpec(PYTEST, "parse_log_pyvista"),
    "scikit-learn/scikit-learn": RepoSpec(PYTEST, "parse_log_scikit"),
    "sqlfluff/sqlfluff": RepoSpec(PYTEST, "parse_log_sqlfluff"),
    "sphinx-doc/sphinx": RepoSpec(SPHINX, "parse_log_sphinx", eval_commands=("sed -i 's/pytest/pytest -rA/' tox.ini",)),
    "sympy/sympy": RepoSpec(SYMPY, "parse_log_sympy"),
}


class SpecError(ValueError):
    pass


def official_image_name(instance_id: str, namespace: str | None = DEFAULT_NAMESPACE, arch: str = DEFAULT_ARCH,
                        tag: str = DEFAULT_TAG) -> str:
    """`sweb.eval.x86_64.<id>:latest` locally; `<namespace>/sweb.eval.x86_64.<id with __ -> _1776_>:latest` for a
    registry image (Docker Hub refuses dunders). Always lower-case."""
    key = f"sweb.eval.{arch}.{instance_id}:{tag}"
    if namespace:
        key = f"{namespace}/{key}".replace("__", "_1776_")
    return key.lower()


@dataclass(frozen=True)
class ImagePolicy:
    """How instance images are named: a row's own `image` wins unless `template` is set; otherwise the official name
    under `namespace` (None or "" = local, un-namespaced). `template` may use {instance_id}, {id_1776}, {repo},
    {version}, {arch} and {tag}."""

    namespace: str | None = DEFAULT_NAMESPACE
    template: str | None = None
    arch: str = DEFAULT_ARCH
    tag: str = DEFAULT_TAG

    def image_for(self, instance: SWEInstance) -> str:
        if self.template:
            return self.template.format(instance_id=instance.instance_id,
                                        id_1776=instance.instance_id.replace("__", "_1776_"),
                                        repo=instance.repo.replace("/", "__"), version=instance.version,
                                        arch=self.arch, tag=self.tag).lower()
        if instance.image:
            return instance.image
        return official_image_name(instance.instance_id, self.namespace, self.arch, self.tag)


@dataclass(frozen=True)
class EvalSpec:
    """Everything the harness needs for one instance."""

    instance_id: str
    image: str
    log_parser: str
    eval_type: str
    FAIL_TO_PASS: list[str] = field(default_factory=list)
    PASS_TO_PASS: list[str] = field(default_factory=list)


def repo_spec(instance: SWEInstance) -> RepoSpec:
    """The spec used to write a classic row's eval script: the row's own `test_cmd` (no environment activation: the
    image's PATH is right), else the table's entry for its repository."""
    if instance.test_cmd:
        return RepoSpec(instance.test_cmd, instance.log_parser or "parse_log_pytest", setup=())
    spec = REPO_SPECS.get(instance.repo)
    if spec is None:
        raise SpecError(f"{instance.instance_id}: no eval script, no test_cmd, and repository {instance.repo!r} is "
                        f"not in the spec table; add `eval_script` (swebench 5.x) or `test_cmd` to the row")
    return spec


def log_parser_name(instance: SWEInstance) -> str:
    if instance.log_parser:
        return instance.log_parser
    spec = REPO_SPECS.get(instance.repo)
    if spec is None:
        if instance.test_cmd:
            return "parse_log_pytest"
        raise SpecError(f"{instance.instance_id}: no log parser known for repository {instance.repo!r}; set "
                        f"`log_parser` in the row (e.g. parse_log_pytest)")
    return spec.log_parser


def eval_type_of(instance: SWEInstance) -> str:
    if instance.eval_type:
        return EvalType(instance.eval_type).value
    return (EvalType.FAIL_ONLY if instance.repo in FAIL_ONLY_REPOS else EvalType.PASS_AND_FAIL).value


def eval_spec(instance: SWEInstance, images: ImagePolicy | None = None) -> EvalSpec:
    return EvalSpec(instance_id=instance.instance_id, image=(images or ImagePolicy()).image_for(instance),
                    log_parser=log_parser_name(instance), eval_type=eval_type_of(instance),
                    FAIL_TO_PASS=list(instance.FAIL_TO_PASS), PASS_TO_PASS=list(instance.PASS_TO_PASS))
