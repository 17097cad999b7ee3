"""Training: the short proxy training a search uses to rank architectures."""
