"""The local stack for the demo, the tests and the benchmarks: processes, supervisor, demo."""
