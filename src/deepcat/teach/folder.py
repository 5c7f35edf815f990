"""The inputs of a folder being labelled: which files they are, what their folders already say, and which
request paths may reach them.

A folder is read as `deepcat train` reads one: a file inside a first-level subfolder is labelled by that folder's
name ("partly sorted"), a file at the top is not labelled yet. Paths are kept relative to the folder, in POSIX
form, as labels.csv writes them.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from deepcat.errors import DeepcatError
from deepcat.inputs import InputKind, all_suffixes, input_kind, kind_of_files

__all__ = ["check_class_name", "confined", "folder_labels", "list_inputs", "new_file_name"]

SAMPLE = 5000  # files whose suffixes choose the folder's kind
_CLASS_NAME = re.compile(r"[^\s./\\_\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]{0,63}")


def list_inputs(root: Path, modality: str = "auto") -> tuple[InputKind, list[str]]:
    """The kind of the folder's inputs (`modality`, or with auto the kind most of its files are; an empty folder
    holds images) and every file of that kind under `root`, relative, sorted; hidden files and folders are
    skipped, and so is a symbolic link that leads out of `root` (`confined` would refuse it). `os.scandir` reads
    a folder of 100,000 files in about a second."""
    root = root.resolve()
    known = set(all_suffixes())
    found: list[str] = []
    stack, skip = [str(root)], len(str(root)) + 1  # an entry's path is the root's, a separator, then its own
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:  # an unreadable folder: its files cannot be labelled
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif _suffix(entry.name) in known and entry.is_file():
                relative = entry.path[skip:].replace(os.sep, "/")
                if not entry.is_symlink() or confined(root, relative) is not None:
                    found.append(relative)
    step = max(1, len(found) // SAMPLE)  # the kind from a sample: a folder's suffixes hardly need all of it
    kind = input_kind(modality) if modality != "auto" else kind_of_files([Path(p) for p in found[::step]])
    return kind, sorted(p for p in found if _suffix(p) in kind.suffixes)


def _suffix(name: str) -> str:
    return name[name.rfind(".") :].lower() if "." in name else ""


def folder_labels(paths: list[str]) -> dict[str, str]:
    """The label each path's first-level folder gives it: {"cat/1.jpg": "cat"}; files at the top have none, nor
    have files in a folder that cannot be a class (`_background_noise_` in Speech Commands, `.hidden`)."""
    labels = {p: p.split("/", 1)[0] for p in paths if "/" in p}
    return {p: label for p, label in labels.items() if _CLASS_NAME.fullmatch(label)}


def confined(root: Path, relative: str) -> Path | None:
    """`root / relative` when it lies inside `root` once every `..` and symbolic link is resolved, else None: a
    request can reach the folder's own files and nothing else (whether it is a file, its caller checks)."""
    if not relative or "\x00" in relative or Path(relative).is_absolute():
        return None
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or path == base:
        return None
    return path


def check_class_name(name: str) -> str:
    """`name` stripped, or a DeepcatError: a class becomes a folder of captured examples and a label in the CSV,
    so it is 1-64 characters, with no slash, and does not start with a dot, an underscore or a space."""
    name = name.strip()
    if not _CLASS_NAME.fullmatch(name):
        raise DeepcatError(
            f"class name {name!r} cannot be used: give 1-64 characters without / or \\, not starting with "
            f"'.', '_' or a space, e.g. cat"
        )
    return name


def new_file_name(folder: Path, suffix: str) -> Path:
    """A name no other file in `folder` has: the capture's time and random letters (two tabs capturing in the
    same second still differ)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return folder / f"capture-{stamp}-{secrets.token_hex(4)}{suffix}"
