"""What a reproduction shows: the paper's tables beside ours (tables.py) and figures (plots.py)."""
