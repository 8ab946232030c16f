"""Models, data, record templates, tasks and online serving, built on :mod:`tracker`."""
