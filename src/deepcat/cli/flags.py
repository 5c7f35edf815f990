"""Command-line arguments generated from the one place each option is declared, and read back into calls.

An option of `deepcat.api` is declared once: a keyword argument of the verb's function gives its name, type and
default, and the docstring's `Args:` section its help; a dataclass field (`TrainConfig`, the server's `Limits`,
listening's `Spotting`) gives all four itself. An `Args:` entry that opens with `TrainConfig.<its name>` (check's
`val_fraction`, evaluate's `amp`) says the option is that training option: its help and choices are the field's,
and the function's default names the field's. `add_api_flags` turns a function into a sub-command's arguments
(`Literal[...]` becomes choices; a bool `--x`, or `--x/--no-x` when it is on by default), `add_dataclass_flags` a
dataclass, and `api_options` reads the parsed flags back into the function's keyword arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from deepcat.config import TrainConfig

__all__ = [
    "API_ONLY",
    "add_api_flags",
    "add_dataclass_flags",
    "api_options",
    "docstring_args",
    "option_type",
    "training_options",
]

API_ONLY = ("progress", "callbacks")  # how Python shows progress and hooks into training (the CLI has --quiet)
_ENTRY = re.compile(r"(\w+): (.*)")


def docstring_args(func: Callable[..., Any]) -> dict[str, str]:
    """The `Args:` section of `func`'s docstring as {parameter: its help}, one entry per parameter.

    Args:
        func: a function whose docstring has a Google-style `Args:` section (`name: text`, continued on deeper
            indented lines, ending at the first blank or unindented line).

    Returns:
        Each parameter's text on one line, in the docstring's order; {} without an `Args:` section.
    """
    lines = (inspect.getdoc(func) or "").splitlines()
    if "Args:" not in lines:
        return {}
    entries: dict[str, str] = {}
    name = ""
    for line in lines[lines.index("Args:") + 1 :]:
        if not line.startswith("    "):
            break
        if line.startswith("        ") and name:
            entries[name] += " " + line.strip()
            continue
        entry = _ENTRY.fullmatch(line.strip())
        if entry is None:
            raise ValueError(
                f"{func.__qualname__}'s Args: section has {line.strip()!r}; write one `name: help` per parameter"
            )
        name, entries[name] = entry.groups()
    return entries


def training_options(func: Callable[..., Any]) -> set[str]:
    """The parameters of `func` that are `TrainConfig`'s fields: their `Args:` entry opens with `TrainConfig.<name>`."""
    return {name for name, text in docstring_args(func).items() if text.startswith(f"`TrainConfig.{name}`")}


def option_type(func: Callable[..., Any], name: str) -> Any:
    """The annotation of `func`'s parameter `name`, evaluated (`str | None`, not the string "str | None")."""
    annotation = inspect.signature(func).parameters[name].annotation
    if isinstance(annotation, str):
        return eval(annotation, getattr(func, "__globals__", {}))  # what typing.get_type_hints does, for one
    return annotation


def _plain(hint: Any) -> tuple[type, tuple[Any, ...] | None]:
    """The type a flag's text is converted to, and its choices: `int | None` -> int; a path is text."""
    if typing.get_origin(hint) is Literal:
        return type(typing.get_args(hint)[0]), typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return _plain(str if str in rest else rest[0])
    return (str if hint is Path else hint), None


def _dataclass_in(hint: Any) -> type | None:
    """`Limits` for `Limits | None`: a parameter whose flags are the dataclass's fields."""
    for kind in (hint, *typing.get_args(hint)):
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            return kind
    return None


def _shown(help_text: str, default: Any) -> str:
    """Help that ends with the default, where there is one to show: none for None (the help says what happens),
    on or off for a bool."""
    if default is None:
        return help_text
    shown = ("on" if default else "off") if isinstance(default, bool) else default
    return f"{help_text} (default: {shown})"


def _argument(parser: argparse.ArgumentParser, flag: str, custom: Mapping[str, Any], **derived: Any) -> None:
    """One argument: what the declaration says (`derived`), with the verb's CLI form (`custom`) over it: `names`
    (the option strings), `more` (help the CLI adds) and any of argparse's keywords."""
    custom = dict(custom)
    names = custom.pop("names", (flag,))
    more = custom.pop("more", "")
    derived.update(custom)
    derived["help"] = f"{derived['help']} {more}".strip().replace("%", "%%")  # argparse formats help with %
    parser.add_argument(*names, **derived)


def add_dataclass_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    only: Collection[str] | None = None,
    skip: Collection[str] = (),
    custom: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """One flag per field of the dataclass `cls`, typed, with its default and help; booleans get --x/--no-x.
    Each flag's default is None, so a call reads which were given (a field's default, or a YAML file's, stays).

    Args:
        parser: the sub-command's parser.
        cls: a dataclass whose fields carry their help (and choices) in `metadata`.
        only: these fields alone. skip: fields with no flag here.
        custom: a field's CLI form where it differs (`--class-threshold CLASS=P` for `thresholds`).
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        kind, choices = _plain(hints[f.name])
        choices = f.metadata.get("choices", choices)
        flag, form = "--" + f.name.replace("_", "-"), (custom or {}).get(f.name, {})
        help_text = f.metadata.get("help", "")
        if f.default is not dataclasses.MISSING:
            help_text = _shown(help_text, f.default)
        if kind is bool:
            _argument(
                parser, flag, form, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            metavar = None if choices else f.name.upper()
            _argument(
                parser,
                flag,
                form,
                dest=f.name,
                type=kind,
                default=None,
                choices=choices,
                help=help_text,
                metavar=metavar,
            )


def add_api_flags(
    parser: argparse.ArgumentParser,
    func: Callable[..., Any],
    *,
    skip: Collection[str] = (),
    custom: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """The arguments of the sub-command that calls `func`: its positional parameters as positionals (optional
    when they have a default), its keyword-only ones as flags; a dataclass parameter as its fields' flags;
    `**options` (`Unpack[TrainOptions]`) as `TrainConfig`'s flags, less the function's own parameters.

    Args:
        parser: the sub-command's parser.
        func: a function of `deepcat.api`: every parameter typed, and in its docstring's `Args:`.
        skip: parameters with no argument (the CLI reads them otherwise).
        custom: a parameter's (or a dataclass field's) CLI form where it differs: `names` (option strings),
            `more` (help only the CLI needs), or argparse's keywords (`nargs`, `metavar`, `choices`, `action`).
    """
    custom = custom or {}
    helps = {name: text.removesuffix(".") for name, text in docstring_args(func).items()}  # a flag's help: a phrase
    config = training_options(func)
    params = inspect.signature(func).parameters
    if missing := set(params) - set(helps) - set(API_ONLY) - set(skip):
        raise ValueError(f"{func.__qualname__}'s docstring has no Args: entry for {', '.join(sorted(missing))}")
    for name, p in params.items():
        if name in API_ONLY or name in skip:
            continue
        form = custom.get(name, {})
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            add_dataclass_flags(parser, TrainConfig, skip=set(params), custom=custom)
            continue
        optional = p.default is not inspect.Parameter.empty
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:  # DATA, RUN, IMAGES...: positional, as in the call
            help_text = TrainConfig.help_of(name) if name in config else helps[name]
            default = getattr(TrainConfig, name) if name in config and optional else None
            nargs = "?" if optional else None
            _argument(parser, name, form, nargs=nargs, metavar=name.upper(), help=_shown(help_text, default))
        elif name in config:
            add_dataclass_flags(parser, TrainConfig, only=(name,), custom=custom)
        elif (cls := _dataclass_in(option_type(func, name))) is not None:
            add_dataclass_flags(parser, cls, custom=custom)
        else:
            _add_option(parser, name, option_type(func, name), p.default, helps[name], form)


def _add_option(
    parser: argparse.ArgumentParser, name: str, hint: Any, default: Any, help_text: str, form: Mapping[str, Any]
) -> None:
    """A keyword-only parameter's flag: required without a default (`inspect.Parameter.empty`); a bool turns on,
    or off when on by default."""
    flag = "--" + name.replace("_", "-")
    kind, choices = _plain(hint)
    if kind is bool:
        action = argparse.BooleanOptionalAction if default else "store_true"
        _argument(parser, flag, form, dest=name, action=action, default=bool(default), help=_shown(help_text, default))
    elif default is inspect.Parameter.empty:
        _argument(parser, flag, form, dest=name, type=kind, choices=choices, required=True, help=help_text)
    else:
        shown = _shown(help_text, default)
        _argument(parser, flag, form, dest=name, type=kind, choices=choices, default=default, help=shown)


def api_options(args: argparse.Namespace, func: Callable[..., Any]) -> dict[str, Any]:
    """The keyword-only arguments of `func` that `args` holds: a dataclass parameter built from its fields'
    flags, `**options` from `TrainConfig`'s. A flag left None is not passed, so the function's default (or a
    YAML file's value) holds. Positional parameters are the command's to pass.

    Args:
        args: what `build_parser` parsed.
        func: the verb's function of `deepcat.api`.

    Returns:
        Keyword arguments for `func`.
    """
    given = {k: v for k, v in vars(args).items() if v is not None}
    params = inspect.signature(func).parameters
    options: dict[str, Any] = {}
    for name, p in params.items():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            fields = {f.name for f in dataclasses.fields(TrainConfig)} - set(params)
            options |= {k: v for k, v in given.items() if k in fields}
        elif p.kind is inspect.Parameter.KEYWORD_ONLY and name not in API_ONLY:
            cls = _dataclass_in(option_type(func, name))
            if cls is not None:
                options[name] = cls(**{f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given})
            elif name in given:
                options[name] = given[name]
    return options
