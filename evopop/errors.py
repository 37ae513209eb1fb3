"""The one base class of the problems a user can fix (bad config, env id, file, argument)."""


def one_line(message: str) -> str:
    """A message as one line: text from a file (a key, a value) may carry line breaks."""
    return " ".join(message.split())


class UserError(ValueError):
    """Reported by the CLI as one line on stderr with exit code 2, without a traceback."""
