"""Models, task training and trainers, ensembles (Qlib: ``qlib.model``)."""
