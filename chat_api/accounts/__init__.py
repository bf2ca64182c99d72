"""Account deletion: every package's part of forgetting an account, finished even across a crash."""
