"""Example apps using flinks-async (tested by tests/test_examples.py)."""
