"""The click commands of `git-theta`, by area; git_theta/cli.py gathers them into the group."""
