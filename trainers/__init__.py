"""Example trainers for `sweeper`: runnable as ``trainers.<module>:<function>`` from the repository root.

- :mod:`trainers.functions`: standard optimisation test functions (Branin, Hartmann-6, Rosenbrock, Ackley,
  Branin-Currin) and a multi-fidelity Branin whose learning curve converges to the function value;
  instant and exact, for checking search and pruning. Needs only the core package.
- :mod:`trainers.boosting`: scikit-learn histogram gradient boosting on a bundled dataset, reporting
  validation metrics every few stages so it can be pruned. Needs ``pip install -e '.[examples]'``.
- :mod:`trainers.digits`: a PyTorch MLP on scikit-learn's bundled digits, with per-epoch metrics,
  checkpoints and resume, on the GPU when the trial has one. Needs ``pip install -e '.[examples,torch]'``.
- ``trainers/wandb_script.py``: an ordinary W&B training script run through a spec's ``program:``.

Nothing here downloads anything: the datasets ship with scikit-learn or are generated.
"""
