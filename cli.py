#!/usr/bin/env python3
"""`python cli.py ARGS` behaves exactly like the `privcodec` console script."""
from privcodec.cli import main

if __name__ == "__main__":
    main()
