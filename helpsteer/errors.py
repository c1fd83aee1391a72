"""Errors that the command line turns into one clear line on stderr and exit code 2."""


class UsageError(Exception):
    """Bad usage or unusable input: the CLI prints the message (file, line, field) and exits 2."""


class RecordError(Exception):
    """One input record cannot be ingested; `reason` goes to quarantine.jsonl."""

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.field = field
