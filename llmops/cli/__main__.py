"""`python -m llmops.cli`: the `llmops` command where its console script is not installed."""

from llmops.cli.app import app

if __name__ == "__main__":
    app()
