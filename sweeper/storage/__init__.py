"""The sweep's record in an Optuna storage: URLs, retries, the sweep and its state, attribute keys,
the queue of waiting trials, and fast reads. The only package that touches Optuna's internals."""
