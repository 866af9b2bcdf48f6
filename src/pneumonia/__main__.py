"""`python -m pneumonia ...` is the `pneumonia` command."""

from pneumonia.cli import main

main()
