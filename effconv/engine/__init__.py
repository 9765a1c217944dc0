"""The training loop, evaluation, checkpointing, run files and the distributed set-up."""
