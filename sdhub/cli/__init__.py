"""The typer command-line front-end: parse arguments, call the library, render the result."""
