"""The errors every layer raises for a user's mistake, and how one is said in a line; imports nothing of ours, so
that the runtime below the core can raise them too."""


class ConfigError(ValueError):
    """Settings that do not fit together (batch size, data, processes, a resumed run); the message says which."""


def first_line(error: Exception) -> str:
    """An error in one line for a message: its text's first line, or its type when it has no text."""
    return (str(error).splitlines() or [type(error).__name__])[0]
