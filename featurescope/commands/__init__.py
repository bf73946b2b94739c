"""The handlers behind the ``featurescope`` subcommands (featurescope/cli.py parses and dispatches).

One module per group of commands: info (models, layers, predict), export, compare and
app (gui, screenshot); common holds what they share and arguments the argparse types.
Each module imports only the standard library at the top and the engine or Qt inside
its handlers, so that ``featurescope --help`` and ``--version`` stay instant.
"""
