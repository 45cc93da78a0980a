"""The harness: adapter loading, grading, the benchmark store, regression detection and HTML reports."""
