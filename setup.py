"""Shim for Beam's `--setup_file ./setup.py` (Dataflow and other remote runners install the package on
workers with it). All metadata lives in pyproject.toml."""
from setuptools import setup

setup()
