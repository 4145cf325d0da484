"""One module per tab; ``ui.app.TABS`` lists them in page order (see ``ui.app`` for the pattern)."""
