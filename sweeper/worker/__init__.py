"""What runs one trial, wherever the executor put it: function trainers, program trainers (the agent's
side), and the program's own side (``sweeper.init()``). Workers never touch the storage."""
