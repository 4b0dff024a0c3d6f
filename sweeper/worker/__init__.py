"""What runs one trial, wherever the executor put it: function trainers, program trainers (the agent's
side), and the program's own side (``sweeper.init()``); a trial in processes forked from the agent
(``forked``) and the ending of what a trial left behind (``reaper``). Workers never touch the storage.

Every module here is public.
"""

# The public modules; the others are the package's own.
__all__ = ["forked", "program", "program_child", "reaper", "trial"]
