"""MkDocs hooks: the CLI reference is generated from `deepcat`'s own parser at build time, so it cannot drift
from the flags (`reference/cli.md` holds only the marker), and the API reference's list of commands from the
verbs' registry (`deepcat.api.VERBS`), so a new verb is documented where it is registered. Declared in mkdocs.yml
under `hooks:`."""

from __future__ import annotations

import argparse
from typing import Any

MARKER = "<!-- cli-reference -->"
API_MARKER = "<!-- api-commands -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    return ", ".join(f"`{flag}`" for flag in action.option_strings)


def _choices(action: argparse.Action) -> str:
    return ", ".join(f"`{c}`" for c in action.choices) if action.choices else ""


def cli_reference() -> str:
    """Markdown for every verb of `deepcat`: its usage line, then each argument with its choices and help (which
    states the default)."""
    from deepcat.cli.parser import build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in verbs._choices_actions}
    parts = []
    for name, sub in verbs.choices.items():
        sub.prog = f"deepcat {name}"
        usage = sub.format_usage().removeprefix("usage: ").strip()
        lines = [f"## deepcat {name}", "", helps.get(name) or "", ""]
        if sub.description:
            lines += [sub.description, ""]
        lines += ["```", usage, "```", "", "| argument | choices | what it does (and its default) |", "|---|---|---|"]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            help_text = sub._get_formatter()._expand_help(action) if action.help else ""  # as --help prints it
            lines.append(f"| {_flags(action)} | {_choices(action)} | {_cell(help_text)} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def api_commands() -> str:
    """A mkdocstrings block (`::: module.function`) per verb of `deepcat.api.VERBS`, in its order, then `load`."""
    from deepcat import api

    functions = [*api.VERBS.values(), *api.PYTHON_ONLY.values()]
    return "\n\n".join(f"::: {f.__module__}.{f.__name__}" for f in functions)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return markdown.replace(MARKER, cli_reference()).replace(API_MARKER, api_commands())
