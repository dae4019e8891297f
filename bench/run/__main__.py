"""``python -m bench.run experiment=table1 profile=quick`` (add -m to sweep)."""
from bench.run.entry import cli

if __name__ == "__main__":
    cli()
