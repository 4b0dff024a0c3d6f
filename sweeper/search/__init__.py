"""What to try next and what to stop: samplers (and the rule that picks one) and pruners."""
