"""Writing results people and programs read: atomic files and JSON, text tables, plots."""
