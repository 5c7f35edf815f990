"""Named choices, registered where they are defined: models, losses, optimisers, layer kinds, export formats and
kinds of input. Adding one is one decorated function (or one `add`); an unknown name is an error that names the
nearest registered one.

    LOSSES = Registry("loss")

    @LOSSES.register("focal")
    def focal(*, label_smoothing, class_weights): ...

    LOSSES.get("focal")   # the function; LOSSES.get("fokal") -> DeepcatError "... Did you mean: focal?"
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from deepcat.errors import DeepcatError, did_you_mean

__all__ = ["T", "Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, value: T) -> T:
        if name in self._entries:
            warnings.warn(f"{self.kind} {name!r} registered twice; the later definition wins", stacklevel=3)
        self._entries[name] = value
        return value

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated function or class under `name`."""
        return lambda value: self.add(name, value)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise DeepcatError(
                f"unknown {self.kind} {name!r}.{did_you_mean(name, self._entries)} "
                f"Registered: {', '.join(self._entries)}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
