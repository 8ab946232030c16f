"""Online serving: manager, strategies, updaters, online tool (Qlib: ``qlib.workflow.online``)."""
