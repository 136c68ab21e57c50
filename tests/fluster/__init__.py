"""Tests of ``contextthreads.fluster``: ``test_<module>.py`` for each ``_<module>.py``.

A package, so that its ``conftest`` and helpers (``support``, ``tasks``) are
``fluster.conftest`` and so on, beside the suite's top-level ``conftest``.
"""
