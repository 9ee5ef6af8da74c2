"""Makes a plain `pytest --nbval-lax` quick everywhere: the notebook's kernel inherits S7_QUICK=1 and then trains
on a small slice of the data for a moment (see helpers.recipes.resolve and quick_data)."""
import os

os.environ.setdefault("S7_QUICK", "1")
