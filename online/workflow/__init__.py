"""Record templates and workflow configs (Qlib: ``qlib.workflow``)."""
