"""`deepcat label`: a local page that labels a folder of images or clips into labels.csv, until interrupted."""

from __future__ import annotations

from pathlib import Path

__all__ = ["label"]


def label(
    data: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    classes: str | None = None,
    modality: str = "auto",
    model: str = "auto",
) -> None:
    """Label DATA on a page in the browser: each input shown in turn (a clip plays), a key per class, Enter
    accepts the model's pre-label when there is one, 0 or n says "none of these", Backspace or u undoes; the
    webcam or the microphone adds examples to a class. Every label is saved to DATA/labels.csv at once (a
    killed server loses nothing), which `deepcat train DATA/labels.csv` reads.

    Args:
        data: a folder of images or sound clips, flat or partly sorted into class folders (a subfolder's name
            labels its files), or a CSV of path,label to continue (its folder's files are the inputs).
        host: the address to listen on; any but this machine's own (127.0.0.1, localhost) needs an API key.
        port: the port to listen on.
        api_key: require this key in X-API-Key (default: $DEEPCAT_API_KEY, else none).
        classes: comma-separated class names to start with, in the order of their keys 1-9 (more can be
            added on the page).
        modality: kind of input: auto (the kind most of DATA's files are) or a registered kind (image, audio).
        model: auto: for images, a pretrained backbone embeds every input in the background (cached in
            DATA/.deepcat) and a quick head, refit after each label, pre-labels the inputs and picks the ones to
            ask next (cats and dogs get ImageNet's pre-labels before the first label); speaker: for sound clips
            whose classes are people, a speaker encoder's features do the same (`pip install --no-deps
            resemblyzer==0.1.4`); a run folder: the features of a run you trained on data like DATA's (for clips of
            words, `deepcat train spoken-commands`); none: folder order (sound clips under auto too).

    Returns:
        Nothing; it serves the page until interrupted.

    Examples:
        >>> deepcat.label("photos", classes="cat,dog")  # then open http://127.0.0.1:8000
    """
    from deepcat.serving.label_start import run_label_server

    names = [c.strip() for c in (classes or "").split(",") if c.strip()]
    run_label_server(data, host=host, port=port, api_key=api_key, classes=names, modality=modality, model=model)
