"""What to try next and what to stop: samplers (and the rule that picks one), pruners, and a user's
own Optuna study and define-by-run search space (``method: custom``, :mod:`~sweeper.search.custom`).

Every module here is public.
"""

# The public modules; the others are the package's own.
__all__ = ["custom", "pruners", "samplers", "strategy"]
