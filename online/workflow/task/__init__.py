"""Task generation, calendars, the task queue and collectors (Qlib: ``qlib.workflow.task``)."""
