"""Teaching: labelling a folder of inputs with a model's help, as `deepcat label` does.

The inputs and their labels (`folder.py`, `labels.py`: labels.csv, the DATA format `deepcat train` reads) are
plain files; what to show next and its pre-label come from one seam, `suggest.Suggester`, fed by work done in the
background (`background.py`) so a folder of any size opens at once.
"""

__all__: list[str] = []
