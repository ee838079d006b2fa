"""The one exception type for mistakes a user can make (bad file, missing column, bad setting)."""


class UserError(Exception):
    """A problem in the user's input or settings.

    The message must name the file, column or setting at fault. Command-line entry points print it
    and exit with status 2, without a traceback. Programming errors never use this type.
    """
