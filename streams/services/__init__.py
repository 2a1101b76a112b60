"""One module per service process: `python -m streams.services.<name>`."""
