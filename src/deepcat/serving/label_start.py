"""`deepcat label`'s start: the session over DATA, refused early on an address others can reach without a key,
then uvicorn until interrupted."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from deepcat.errors import DeepcatError
from deepcat.serving.start import UVICORN_OPTIONS

__all__ = ["LOCAL_HOSTS", "run_label_server"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def run_label_server(
    data: str | Path,
    *,
    host: str,
    port: int,
    api_key: str | None,
    classes: Sequence[str],
    modality: str,
    model: str = "auto",
) -> None:
    """Label DATA (see `deepcat.label`) on `host`:`port` until interrupted."""
    import uvicorn

    from deepcat.serving.label_app import create_label_app
    from deepcat.teach.session import make_suggester, open_session

    api_key = api_key or os.environ.get("DEEPCAT_API_KEY")
    if host not in LOCAL_HOSTS and not api_key:
        raise DeepcatError(
            f"--host {host} lets other machines read the inputs and write labels.csv; pass --api-key KEY (or set "
            f"DEEPCAT_API_KEY), or leave --host at 127.0.0.1"
        )
    session = open_session(data, classes=classes, modality=modality, suggester=partial(make_suggester, model=model))
    print(
        f"labelling {session.summary()['total']} {session.kind.words.plural} of {session.root} on "
        f"http://{host}:{port}{' with an API key' if api_key else ''}; labels go to {session.store.csv}, "
        f"then: deepcat train {session.store.csv}",
        file=sys.stderr,
    )
    uvicorn.run(create_label_app(session, api_key=api_key), host=host, port=port, **UVICORN_OPTIONS)
