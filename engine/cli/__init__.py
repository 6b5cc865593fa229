"""``python -m engine COMMAND``: one module per command (``add_arguments(parser)``, ``run(args)``)
and :mod:`.options` for what several commands share."""
