"""``python -m collector`` and the ``sagalens`` command.

The command line is imported only when it runs: a decode process, which Python starts by
importing the main module again, then loads none of it (see ``collector.helpers``).
"""

from __future__ import annotations


def main() -> None:
    from collector.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
