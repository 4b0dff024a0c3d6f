"""What runs one trial, wherever the executor put it: function trainers, program trainers (the agent's
side), and the program's own side (``sweeper.init()``). Workers never touch the storage.

Every module here is public.
"""

# The public modules; the others are the package's own.
__all__ = ["program", "program_child", "trial"]
