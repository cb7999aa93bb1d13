"""BrightRun training worker."""
