"""``drx``: the command-line skin over the library (the group and its options are in ``cli.main``)."""
