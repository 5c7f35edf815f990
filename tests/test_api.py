"""The Python API and the CLI are one product: the same verbs, the same options."""

import argparse
import dataclasses
import importlib
import inspect
import typing

import pytest

import deepcat
from deepcat import api
from deepcat.cli import build_parser
from deepcat.config import TrainConfig, TrainOptions

CLI_ONLY = {"json", "quiet", "top", "help"}  # how the CLI prints, not what is done
API_ONLY = {"progress", "callbacks"}  # how Python shows progress and hooks into training
API_ONLY_VERBS = {"load"}  # a classifier object has no command-line form


def cli_options() -> dict[str, set[str]]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {verb.replace("-", "_"): {a.dest for a in p._actions} - CLI_ONLY for verb, p in sub.choices.items()}


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


def api_options(func) -> set[str]:
    """Keyword names of `func`: `**options: Unpack[TypedDict]` and dataclass-typed parameters by their fields."""
    hints = typing.get_type_hints(func, localns=result_types(), include_extras=True)
    names = set()
    for name, param in inspect.signature(func).parameters.items():
        hint = hints.get(name)
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            names |= set(typing.get_type_hints(typing.get_args(hint)[0]))
        elif name in API_ONLY:
            continue
        elif dataclasses.is_dataclass(typing.get_args(hint)[0] if typing.get_args(hint) else hint):
            cls = next(a for a in typing.get_args(hint) if dataclasses.is_dataclass(a))
            names |= {f.name for f in dataclasses.fields(cls)}
        else:
            names.add(name)
    return names


def test_train_options_are_train_config():
    fields = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    assert {"data", *TrainOptions.__annotations__} == set(fields)
    hints, options = typing.get_type_hints(TrainConfig), typing.get_type_hints(TrainOptions)
    assert all(options[name] == hints[name] for name in options), "TrainOptions types differ from TrainConfig"


def test_every_verb_is_an_api_function_with_the_cli_options():
    cli = cli_options()
    assert set(deepcat.__all__) - {"TrainConfig", "DeepcatError"} - API_ONLY_VERBS == set(cli)
    for verb, flags in cli.items():
        own = api_options(getattr(api, verb))
        if verb == "predict":  # the CLI reads MODEL as the first of its inputs
            flags = flags | {"model"}
        assert own == flags, f"{verb}: only in the API {own - flags}, only in the CLI {flags - own}"


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
    assert callable(deepcat.export)


def test_every_public_api_function_says_its_arguments_and_what_it_returns():
    """timm's and scikit-learn's habit: the API's docstrings carry Args (where there are any) and Returns."""
    import inspect

    from deepcat import api

    functions = [getattr(api, name) for name in api.__all__]
    functions = [f for f in functions if inspect.isfunction(f) and f.__module__.startswith("deepcat.api.")]
    assert len(functions) >= 10
    missing = [
        f.__name__
        for f in functions
        if "Returns:" not in (f.__doc__ or "") or (inspect.signature(f).parameters and "Args:" not in f.__doc__)
    ]
    assert missing == []
