"""The ``tracker`` command line: a thin layer over :mod:`tracker` (and later :mod:`online`)."""
