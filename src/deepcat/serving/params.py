"""The prediction routes' query and header parameters, read from the request and described in the OpenAPI document
here rather than by FastAPI's parameter resolution: for three optional parameters, `solve_dependencies` and its
per-request type checks took about a fifth of the event loop's CPU per lone /v1/predict (yappi, 2 cores), where a
plain FastAPI route without parameters pays nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from deepcat.serving.admission import DEADLINE_HEADER
from deepcat.serving.errors import RequestError

__all__ = ["COVERAGE", "DEADLINE", "TOP_K", "Number", "openapi_parameters"]


@dataclass(frozen=True)
class Number:
    """One optional number in the query string or a header, with its bounds; `above` excludes the minimum."""

    name: str
    where: str  # "query" or "header"
    integer: bool
    default: float | None
    minimum: float
    maximum: float
    description: str
    above: bool = False

    def read(self, request: Request) -> Any:
        """The value the request gives (or the default); a 422 `invalid_parameter` when it is not a number in range."""
        given = (request.query_params if self.where == "query" else request.headers).get(self.name)
        if given is None:
            return self.default
        try:
            value: float = int(given) if self.integer else float(given)
        except ValueError:
            value = math.nan
        low_ok = value > self.minimum if self.above else value >= self.minimum
        if not (low_ok and value <= self.maximum):  # NaN fails both
            bound = f"{'above' if self.above else 'at least'} {self.minimum:g} and at most {self.maximum:g}"
            kind = "an integer" if self.integer else "a number"
            raise RequestError(422, "invalid_parameter", f"{self.where}.{self.name}: {given!r} is not {kind} {bound}")
        return value

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer" if self.integer else "number", "maximum": self.maximum}
        schema["exclusiveMinimum" if self.above else "minimum"] = self.minimum
        if self.default is not None:
            schema["default"] = self.default
        return {
            "name": self.name,
            "in": self.where,
            "required": False,
            "schema": schema,
            "description": self.description,
        }


TOP_K = Number("top_k", "query", True, 5, 1, 1000, "how many of the most likely classes to answer")
COVERAGE = Number(
    "coverage",
    "query",
    False,
    None,
    0.5,
    0.99,
    "answer also the prediction set that holds the true class with this probability (0.50, 0.51, ..., 0.99)",
)
DEADLINE = Number(
    DEADLINE_HEADER,
    "header",
    False,
    None,
    0,
    3_600_000,
    "the most milliseconds you will wait: refused at once (503) when the server expects a longer wait, dropped "
    "(503) if the input has not started by then",
    above=True,
)


def openapi_parameters(*numbers: Number) -> dict[str, Any]:
    return {"parameters": [number.openapi() for number in numbers]}
