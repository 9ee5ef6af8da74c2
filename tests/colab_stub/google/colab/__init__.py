"""Stand-in for Colab's `google.colab` package, for tests/test_colab.py: the notebook only checks that it is imported."""
