"""Market data, Alpha158-style features and datasets (Qlib: ``qlib.data``)."""
