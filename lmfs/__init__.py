"""lmfs — language models from scratch, with a benchmark-and-test-first harness."""

__version__ = "0.1.0"
