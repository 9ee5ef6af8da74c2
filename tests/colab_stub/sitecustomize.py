"""Imported at interpreter start when this folder is on PYTHONPATH: like Colab's kernel, which has `google.colab`
imported before the first cell runs (the notebook looks for it in sys.modules)."""
import google.colab  # noqa: F401
