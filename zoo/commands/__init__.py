"""The command line, one module per feature: each ``add_parser(sub, common)`` adds its subcommand and
parses into the feature's request (``zoo.features``); ``zoo.cli`` lists them in ``COMMANDS``."""
