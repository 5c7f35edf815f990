"""True labels sent back by the model's owner (`POST /v1/feedback {"id", "label"}`): each answer carries an id,
the server remembers the last REMEMBERED answers' labels, and a label sent for one of them is scored against the
answer, so `/v1/monitor` shows the measured accuracy beside the estimated one."""

from __future__ import annotations

import collections
import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from deepcat.inference.answers import UNKNOWN
from deepcat.serving.errors import RequestError

__all__ = ["FEEDBACK_BYTES", "REMEMBERED", "Answers"]

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
