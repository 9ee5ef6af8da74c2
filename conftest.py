"""Makes a plain `pytest --nbval-lax` quick everywhere: the notebook's kernel inherits S7_QUICK=1 and then trains
on a small slice of the data for a moment (see helpers.recipes.resolve and quick_data)."""
import os
import tempfile

os.environ.setdefault("S7_QUICK", "1")

# Measured precision choices are remembered per processor (helpers.precision.cache_path): the tests keep theirs in a
# folder of their own, never in the user's ~/.cache.
if "S7_PRECISION_CACHE" not in os.environ:
    os.environ["S7_PRECISION_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="s7-test-cache-"), "precision.json")
