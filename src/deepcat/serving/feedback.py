"""True labels sent back by the model's owner (`POST /v1/feedback {"id", "label"}`): each answer carries an id,
the server remembers the last REMEMBERED answers' labels, and a label sent for one of them is scored against the
answer, so `/v1/monitor` shows the measured accuracy beside the estimated one. Both routes are here
(`monitor_routes`); `app.create_app` adds them."""

from __future__ import annotations

import collections
import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request

from deepcat.inference.answers import UNKNOWN
from deepcat.serving import requests
from deepcat.serving.errors import RequestError

if TYPE_CHECKING:
    from deepcat.serving.app import Served

__all__ = ["FEEDBACK_BODY", "FEEDBACK_BYTES", "REMEMBERED", "Answers", "monitor_routes"]

REMEMBERED = 100_000  # answers a label can be sent for: about 17 MB, a day of one answer a second
FEEDBACK_BYTES = 4096  # a feedback body is an id and a class name


@dataclass
class Answers:
    """The labels of recent answers by id, oldest forgotten first."""

    classes: Sequence[str]
    size: int = REMEMBERED
    labels: collections.OrderedDict[str, str] = field(default_factory=collections.OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def remember(self, answer: dict[str, Any]) -> str:
        """Give `answer` an id (set in it and returned) and remember the label it gave (its top class if it
        answered `unknown`, so a label sent back says whether the model's best guess was right)."""
        answer_id = uuid.uuid4().hex
        label = answer["top"][0]["label"] if answer["label"] == UNKNOWN else answer["label"]
        with self.lock:
            self.labels[answer_id] = label
            while len(self.labels) > self.size:
                self.labels.popitem(last=False)
        answer["id"] = answer_id
        return answer_id

    def score(self, data: bytes) -> tuple[str, bool]:
        """The answer's id and whether it was right, from the JSON body {"id": str, "label": one of the classes};
        a 4xx `RequestError` for another body, or an id not (or no longer) remembered."""
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not isinstance(body.get("label"), str):
            raise RequestError(422, "invalid_feedback", 'send JSON {"id": "<the answer\'s id>", "label": "<class>"}')
        if body["label"] not in self.classes:
            known = ", ".join(self.classes[:20])
            raise RequestError(422, "invalid_label", f"{body['label']!r} is not one of the model's classes: {known}")
        with self.lock:
            answered = self.labels.pop(body["id"], None)
        if answered is None:
            raise RequestError(
                404, "unknown_id", f"no answer {body['id']!r} among the last {self.size} (or its label came already)"
            )
        return body["id"], bool(answered == body["label"])


def monitor_routes(app: FastAPI, served: Served) -> None:
    """What the model sees in the field, and the true labels its owner sends back."""

    @app.get(
        "/v1/monitor",
        summary="The last answers against validation: drift, estimated accuracy, alarm",
        responses=requests.error_responses(401),
    )
    async def monitor(request: Request) -> dict[str, Any]:
        requests.authorise(request, served.api_key)
        return served.answer(served.monitor.report())

    @app.post(
        "/v1/feedback",
        summary="An answer's true label",
        responses=requests.error_responses(401, 404, 413, 422),
        openapi_extra={"requestBody": FEEDBACK_BODY},
    )
    async def feedback(request: Request) -> dict[str, Any]:
        requests.authorise(request, served.api_key)
        answer_id, correct = served.answers.score(await requests.read_body(request, FEEDBACK_BYTES))
        served.monitor.add_feedback(correct)
        return {"id": answer_id, "correct": correct}


FEEDBACK_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["id", "label"],
                "properties": {
                    "id": {"type": "string", "description": "the answer's id"},
                    "label": {"type": "string", "description": "its true class"},
                },
            }
        }
    },
}
