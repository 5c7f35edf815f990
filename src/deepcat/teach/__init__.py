"""Teach: from unlabelled inputs to labels and a first model in seconds, as `deepcat label` and `deepcat train
--quick` do.

The inputs and their labels (`folder.py`, `labels.py`: labels.csv, the DATA format `deepcat train` reads) are
plain files; what to show next and its pre-label come from one seam, `suggest.Suggester`, fed by work done in the
background (`background.py`) so a folder of any size opens at once. A frozen ImageNet backbone embeds every input
once (`features.py`, cached on disk beside the data), and a small head is refit on those features after each label
(`quick.py`); `quick_run.py` writes the same quick model as an ordinary run folder (`deepcat train --quick`). Which
inputs to ask next (`choose.py`), which pre-labels to accept in bulk with a guarantee (`bulk.py`) and what to show
for review (`review.py`) work on numpy arrays of features and probabilities.
"""

__all__: list[str] = []
