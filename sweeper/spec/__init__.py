"""The sweep spec: W&B's YAML read into frozen dataclasses, its laws and search space, overrides."""
