"""Makes a plain `pytest --nbval-lax` quick everywhere: the notebook's kernel inherits S7_QUICK=1 and then trains
on a small slice of the data for a moment (see helpers.recipes.resolve and quick_data)."""
import os

os.environ.setdefault("S7_QUICK", "1")



def pytest_configure(config):
    """The notebook is collected only under nbval (`pytest --nbval-lax`): a plain `pytest -m "not slow"` leaves it
    out rather than failing to read it."""
    if not (config.getoption("nbval", False) or config.getoption("nbval_lax", False)):
        config.args[:] = [arg for arg in config.args if not arg.endswith(".ipynb")]

def pytest_collection_modifyitems(config, items):
    """nbval's cells run the whole notebook: they belong to the slow tier."""
    import pytest
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
