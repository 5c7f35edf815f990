"""Teach: label a folder with the model's help. Which inputs to label next (choose.py), which pre-labels to
accept in bulk with a guarantee (bulk.py), and what to show for review (review.py)."""

__all__: list[str] = []
