"""The one base class of the problems a user can fix (bad config, env id, file, argument)."""


class UserError(ValueError):
    """Reported by the CLI as one line on stderr with exit code 2, without a traceback."""
