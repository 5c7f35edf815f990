"""The Python API and the CLI are one product: the same verbs, and each option declared once, in the API.

An option is declared by a keyword argument of the verb's function (name, type, default) and its docstring's
`Args:` entry (help), or by a dataclass field (`TrainConfig`, `Limits`, `Spotting`). These tests read those
declarations on their own and hold every flag to them: name, type, choices, default and help; and they fail when
the CLI writes an option by hand, so nothing is said twice. A toy verb proves the comparison catches each kind of
disagreement.
"""

import argparse
import ast
import dataclasses
import importlib
import importlib.util
import inspect
import json
import re
import types
import typing
from pathlib import Path
from typing import Literal

import pytest

import deepcat
from deepcat import api
from deepcat.cli import build_parser
from deepcat.cli.flags import API_ONLY, add_api_flags, api_options, docstring_args
from deepcat.config import TrainConfig, TrainOptions

CLI_ONLY = {"json", "quiet", "monitor", "top", "help"}  # how the CLI prints, not what is done
VERBS = sorted(f.__name__ for f in api.VERBS.values())  # each verb's function name (lr_find for `deepcat lr-find`)
CLI_READS = {"predict": {"model"}}  # the CLI reads MODEL as the first of its inputs
OWN_FORM = {"thresholds"}  # listen's --class-threshold CLASS=P: a dict field, typed by its own action
SRC = Path(__file__).parent.parent / "src" / "deepcat"


def sub_parsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {verb.replace("-", "_"): p for verb, p in sub.choices.items()}


def result_types() -> dict:
    """The names `deepcat.api` imports only for type checkers (its results), to resolve its annotations."""
    from deepcat.data.audit import Audit, CleanSplit  # noqa: F401
    from deepcat.evaluation.explain import Explanation  # noqa: F401
    from deepcat.evaluation.label_errors import LabelErrors  # noqa: F401
    from deepcat.evaluation.scores import Evaluation  # noqa: F401
    from deepcat.exporting.export import ExportResult  # noqa: F401
    from deepcat.inference.answers import InputItem, Prediction  # noqa: F401
    from deepcat.inference.exported import ExportedClassifier  # noqa: F401
    from deepcat.inference.listen import Detection  # noqa: F401
    from deepcat.inference.prediction_file import PredictionFile  # noqa: F401
    from deepcat.inference.torch_model import Classifier  # noqa: F401
    from deepcat.training.lr_find import LrFind  # noqa: F401
    from deepcat.tuning.results import TuneResult  # noqa: F401

    return dict(locals())


@dataclasses.dataclass
class Declared:
    """One option as its single declaration says it."""

    hint: object
    default: object  # the value it has when not given
    help: str
    where: str  # "signature" (keyword argument + Args:), or the dataclass it is a field of
    positional: bool = False
    required: bool = False


def _field(cls: type, f: dataclasses.Field) -> Declared:
    default = f.default if f.default is not dataclasses.MISSING else None
    return Declared(typing.get_type_hints(cls)[f.name], default, f.metadata.get("help", ""), cls.__name__)


def declared(func) -> dict[str, Declared]:
    """Every option of `func` that a flag stands for, read from its signature, docstring and dataclasses."""
    hints = typing.get_type_hints(func, localns=result_types(), include_extras=True)
    docs = docstring_args(func)
    params = inspect.signature(func).parameters
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    options: dict[str, Declared] = {}
    for name, p in params.items():
        hint, positional = hints.get(name), p.kind is not inspect.Parameter.KEYWORD_ONLY
        cls = next((a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a)), None)
        if name in API_ONLY:
            continue
        if p.kind is inspect.Parameter.VAR_KEYWORD:  # **options: Unpack[TrainOptions]
            options |= {n: _field(TrainConfig, f) for n, f in fields.items() if n not in params}
        elif cls is not None and not positional:
            options |= {f.name: _field(cls, f) for f in dataclasses.fields(cls)}
        elif docs[name].startswith(f"`TrainConfig.{name}`"):
            options[name] = dataclasses.replace(_field(TrainConfig, fields[name]), positional=positional)
            options[name].required = positional and p.default is inspect.Parameter.empty
        else:
            required = p.default is inspect.Parameter.empty
            default = None if required else p.default
            help_text = docs[name].removesuffix(".")
            options[name] = Declared(hint, default, help_text, "signature", positional, required)
    return options


def _plain(hint) -> tuple[object, tuple | None]:
    """What a flag converts its text to, and its choices: int for `int | None`, str for a path."""
    if typing.get_origin(hint) is Literal:
        return type(typing.get_args(hint)[0]), typing.get_args(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _plain(str if str in args else args[0])
    return (str if hint is Path else hint), None


def disagreements(func, parser: argparse.ArgumentParser, *, reads=frozenset()) -> list[str]:
    """Where the sub-command's arguments differ from `func`'s declarations: name, type, choices, default, help;
    a flag no declaration stands behind; a default a function restates instead of naming its field's."""
    actions = {a.dest: a for a in parser._actions if a.dest not in CLI_ONLY}
    options = declared(func)
    found = [f"{name}: a flag with no declaration in {func.__name__}" for name in set(actions) - set(options)]
    found += [f"{name}: declared, but no flag" for name in set(options) - set(actions) - set(reads)]
    params = inspect.signature(func).parameters
    for name, option in options.items():
        if name not in actions:
            continue
        a = actions[name]
        shown = (a.help or "").replace("%%", "%")  # as argparse prints it
        if not shown.startswith(option.help):
            found.append(f"{name}: help {a.help!r}, declared {option.help!r}")
        if name in params and option.where == "TrainConfig" and not option.positional:
            if params[name].default != option.default:
                found.append(f"{name}: the function's default {params[name].default!r} is not TrainConfig's")
        if option.positional:  # text on the command line, whatever Python also takes
            if (a.nargs in ("?", "*")) == option.required:
                found.append(f"{name}: {'required' if option.required else 'optional'}, nargs {a.nargs!r}")
            continue
        if name in OWN_FORM:
            continue
        kind, choices = _plain(option.hint)
        choices = (
            tuple(TrainConfig.__dataclass_fields__[name].metadata.get("choices", ()))
            if option.where == "TrainConfig" and not choices
            else choices
        ) or None
        if kind is bool:
            if not isinstance(a, (argparse.BooleanOptionalAction, argparse._StoreTrueAction)):
                found.append(f"{name}: a bool, but the flag takes a value")
        elif a.type is not kind:
            found.append(f"{name}: type {a.type}, declared {kind}")
        if choices and tuple(a.choices or ()) != choices:
            found.append(f"{name}: choices {a.choices}, declared {choices}")
        if a.choices and option.default is not None and option.default not in a.choices:
            found.append(f"{name}: default {option.default!r} not among the choices")
        cli_default = option.default if option.where == "signature" else None  # a field's flag: None, not given
        if option.required != a.required or (not option.required and a.default != cli_default):
            found.append(f"{name}: default {a.default!r} (required {a.required}), declared {cli_default!r}")
        if option.default not in (None, True, False) and f"(default: {option.default})" not in a.help:
            found.append(f"{name}: help does not show the default {option.default!r}")
    return sorted(found)


def test_train_options_are_train_config():
    fields = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    assert {"data", *TrainOptions.__annotations__} == set(fields)
    hints, options = typing.get_type_hints(TrainConfig), typing.get_type_hints(TrainOptions)
    assert all(options[name] == hints[name] for name in options), "TrainOptions types differ from TrainConfig"


def test_every_verb_is_registered_a_command_and_typed():
    """Every public function of `deepcat/api/*.py` is in the registry (or Python-only), every registered verb is a
    sub-command, the CLI's own tables name only registered verbs, and type checkers see each name `deepcat`
    answers at run time (its TYPE_CHECKING imports, which no registry can give them)."""
    from deepcat.cli.commands import PRINTERS
    from deepcat.cli.parser import COMMANDS

    registered = {f.__name__ for f in (*api.VERBS.values(), *api.PYTHON_ONLY.values())}
    modules = {p.stem for p in (SRC / "api").glob("*.py")} - {"__init__"}
    defined = {
        name
        for module in modules
        for name, f in vars(importlib.import_module(f"deepcat.api.{module}")).items()
        if inspect.isfunction(f) and f.__module__ == f"deepcat.api.{module}" and name == module
    }
    assert defined == registered
    assert set(api.VERBS) == set(build_parser()._subparsers._group_actions[0].choices)
    assert set(COMMANDS) | set(PRINTERS) <= set(api.VERBS)
    source = (SRC / "__init__.py").read_text().split("if TYPE_CHECKING:", 1)[1].split("\n\n", 1)[0]
    typed = set(re.findall(r"from deepcat\.api import (\w+) as", source))
    assert typed == registered
    assert set(deepcat.__all__) == registered | {"TrainConfig", "DeepcatError"}


@pytest.mark.parametrize("verb", VERBS)
def test_every_flag_is_its_api_option_in_name_type_default_and_help(verb):
    assert disagreements(getattr(api, verb), sub_parsers()[verb], reads=CLI_READS.get(verb, set())) == []


def hand_written_flags(source: str, options: set[str]) -> list[str]:
    """`add_argument("--name", ...)` calls in `source` for an option the API declares."""
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)]
    flags = [
        c.args[0].value
        for c in calls
        if getattr(c.func, "attr", "") == "add_argument" and c.args and isinstance(c.args[0], ast.Constant)
    ]
    return [f for f in flags if f.lstrip("-").replace("-", "_") in options]


def test_no_option_is_written_by_hand_in_the_cli():
    options = set().union(*(declared(getattr(api, verb)) for verb in VERBS))
    assert {"batch_size", "top_k", "check_images", "per_shard"} <= options
    written = {p.name: hand_written_flags(p.read_text(), options) for p in (SRC / "cli").glob("*.py")}
    assert {name: flags for name, flags in written.items() if flags} == {}


def test_no_overload_restates_a_default():
    """`@overload` signatures say `= ...`: the implementation's signature holds each default once."""
    restated = []
    for path in (SRC / "api").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(ast.unparse(d) == "overload" for d in node.decorator_list):
                defaults = node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
                restated += [f"{path.name}:{d.lineno}" for d in defaults if ast.unparse(d) != "..."]
    assert restated == []


def test_no_help_states_the_default_its_flag_adds():
    for verb in VERBS:
        func, docs = getattr(api, verb), docstring_args(getattr(api, verb))
        for name, p in inspect.signature(func).parameters.items():
            assert f"default: {p.default})" not in docs.get(name, ""), f"{verb}: {name}'s help repeats its default"


# A toy verb and parsers written by hand that each disagree with it one way: the comparison must catch each.
def toy(run: str, *, size: int = 3, mode: Literal["fast", "slow"] = "fast", loud: bool = False) -> None:
    """A toy verb.

    Args:
        run: a run folder.
        size: how many
            (continued here).
        mode: how to go.
        loud: say more.
    """


def hand_made(**changed) -> argparse.ArgumentParser:
    flags = {
        "run": dict(metavar="RUN", help="a run folder"),
        "--size": dict(type=int, default=3, help="how many (continued here) (default: 3)"),
        "--mode": dict(type=str, choices=("fast", "slow"), default="fast", help="how to go (default: fast)"),
        "--loud": dict(action="store_true", help="say more"),
    }
    parser = argparse.ArgumentParser()
    for flag, kw in {**flags, **changed}.items():
        if kw is not None:
            parser.add_argument(flag, **kw)
    return parser


def test_a_generated_or_faithful_parser_agrees_with_the_toy():
    generated = argparse.ArgumentParser()
    add_api_flags(generated, toy)
    assert disagreements(toy, generated) == []
    assert disagreements(toy, hand_made()) == []


@pytest.mark.parametrize(
    "changed, caught",
    [
        ({"--size": dict(type=int, default=4, help="how many (continued here) (default: 4)")}, "size: default 4"),
        ({"--size": dict(type=float, default=3, help="how many (continued here) (default: 3)")}, "size: type"),
        ({"--size": dict(type=int, default=3, help="how large (default: 3)")}, "size: help 'how large"),
        ({"--size": dict(type=int, default=3, help="how many (continued here)")}, "size: help does not show"),
        ({"--mode": dict(default="fast", help="how to go (default: fast)")}, "mode: choices None"),
        ({"--loud": dict(type=int, default=0, help="say more")}, "loud: a bool"),
        ({"--loud": None}, "loud: declared, but no flag"),
        ({"--colour": dict(help="a flag nobody declared")}, "colour: a flag with no declaration"),
        ({"run": dict(nargs="?", help="a run folder")}, "run: required, nargs '?'"),
    ],
)
def test_the_comparison_catches_a_toy_that_disagrees(changed, caught):
    found = disagreements(toy, hand_made(**changed))
    assert any(line.startswith(caught) for line in found), found


def test_the_comparison_catches_an_option_written_twice():
    source = 'p.add_argument("--batch-size", type=int, default=256)\np.add_argument("--json", action="store_true")'
    assert hand_written_flags(source, {"batch_size", "top_k"}) == ["--batch-size"]


def test_docstring_args_reads_one_entry_per_parameter():
    assert docstring_args(toy) == {
        "run": "a run folder.",
        "size": "how many (continued here).",
        "mode": "how to go.",
        "loud": "say more.",
    }

    def two_in_one(*, a: int = 1, b: int = 2) -> None:
        """Two.

        Args:
            a, b: both at once.
        """

    with pytest.raises(ValueError, match="one `name: help` per parameter"):
        docstring_args(two_in_one)


def test_parsed_flags_become_the_functions_keyword_arguments():
    parse = build_parser().parse_args
    serve = api_options(parse(["serve", "--max-batch", "8", "--port", "9000"]), api.serve)
    assert serve["limits"] == api.Limits(max_batch=8) and serve["port"] == 9000
    evaluate = api_options(parse(["evaluate", "runs/r"]), api.evaluate)
    assert "amp" not in evaluate and evaluate["batch_size"] == 256  # amp left to its default: TrainConfig's
    tune = api_options(parse(["tune", "--workers", "2", "--epochs", "3"]), api.tune)
    assert tune == {"workers": 2, "pruning": True, "epochs": 3}  # tune's own workers, not TrainConfig's
    listen = api_options(parse(["listen", "run", "a.wav", "--class-threshold", "six=0.9"]), api.listen)
    assert listen["spotting"] == api.Spotting(thresholds={"six": 0.9})


@dataclasses.dataclass
class Counted:
    words: int
    longest: str


def count_words(path: str, *, longer_than: int = 0) -> Counted:
    """Count the words of a text file.

    Args:
        path: a text file.
        longer_than: count only the words longer than this.

    Returns:
        How many words, and the longest.
    """
    words = [w for w in Path(path).read_text().split() if len(w) > longer_than]
    return Counted(len(words), max(words, key=len))


def test_a_verb_is_its_module_and_one_registry_line(monkeypatch, tmp_path, capsys):
    """Registered in `deepcat.api.VERBS` and nowhere else, a verb is a command: help from its docstring, flags from
    its signature, the result printed, and a section of the API reference."""
    monkeypatch.setitem(api.VERBS, "count-words", count_words)
    text = tmp_path / "words.txt"
    text.write_text("a cat sat on the windowsill")
    parser = build_parser()
    assert "count the words of a text file" in parser.format_help()
    assert disagreements(count_words, sub_parsers()["count_words"]) == []
    args = parser.parse_args(["count-words", str(text), "--longer-than", "2"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out) == {"words": 4, "longest": "windowsill"}
    assert "count_words" in deepcat.__all__ and deepcat.count_words is count_words
    hooks = importlib.util.spec_from_file_location("docs_hooks", SRC.parent.parent / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(hooks)
    hooks.loader.exec_module(module)
    assert f"::: {__name__}.count_words" in module.api_commands()


@pytest.mark.parametrize("verb", ["train", "evaluate", "predict", "export", "check", "explain", "lr_find"])
def test_api_functions_are_typed_and_keyword_only(verb):
    func = getattr(api, verb)
    params = inspect.signature(func).parameters.values()
    assert all(p.annotation is not inspect.Parameter.empty for p in params), verb
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD or "Unpack" in str(p.annotation) for p in params)
    assert inspect.signature(func).return_annotation not in (inspect.Signature.empty, "dict", "dict[str, Any]")


def test_lazy_api_resolves_every_name():
    for name in deepcat.__all__:
        assert callable(getattr(deepcat, name)), name
    importlib.import_module("deepcat.exporting.formats")  # a subpackage import must not shadow deepcat.export
    importlib.import_module("deepcat.api.export")  # nor the verb's own module
    assert callable(deepcat.export) and callable(api.export)


def test_every_public_api_function_says_its_arguments_and_what_it_returns():
    """timm's and scikit-learn's habit: the API's docstrings carry Args (one per parameter) and Returns."""
    functions = [*api.VERBS.values(), *api.PYTHON_ONLY.values(), api.export_formats, api.model_source]
    functions = [f for f in functions if inspect.isfunction(f) and f.__module__.startswith("deepcat.api.")]
    assert len(functions) >= 10
    assert [f.__name__ for f in functions if "Returns:" not in (f.__doc__ or "")] == []
    undocumented = {f.__name__: set(inspect.signature(f).parameters) - set(docstring_args(f)) for f in functions}
    assert {name: params for name, params in undocumented.items() if params} == {}
