"""Data errors: each names where (file:line, or file plus record / row index) and what is wrong."""

from ..config.errors import ConfigError

SKIP_HINT = "fix the record, or set data.skip_bad_records: true (--skip_bad_records) to skip and count bad records"


class DataError(ConfigError, ValueError):
    """A bad data file or record. A ConfigError, so every CLI verb prints it on one line and exits 2.

    `kind` is a short category ("invalid JSON", "missing field", ...) used to count skipped records.
    """

    def __init__(self, where: str, problem: str, kind: str = "bad record"):
        self.where, self.problem, self.kind = where, problem, kind
        super().__init__(f"{where}: {problem}")
