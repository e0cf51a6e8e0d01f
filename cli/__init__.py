"""The `passport` command line: thin commands over the `passport` library."""
