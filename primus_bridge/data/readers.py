"""Stream records from JSON Lines, JSON array and Parquet files, or a folder of them, one record at a time.

Memory stays bounded by the largest record, not the file. A record that cannot be parsed comes out as a
RawRecord with `problem` set (the pipeline raises or, with data.skip_bad_records, counts it); a file that
cannot be read at all (no such path, broken JSON array, unreadable Parquet) raises DataError at once.
"""

from collections.abc import Iterator
from pathlib import Path

from .errors import DataError
from .records import RawRecord
from .strict_json import JSON_DECODER, parse_json_line

SUFFIXES = (".jsonl", ".json", ".parquet")
ARRAY_READ_CHARS = 1 << 20


def data_files(data_path: str) -> list[Path]:
    """The data files named by data.data_path: the file itself, or every data file below the folder, sorted."""
    path = Path(data_path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(str(path), "no such file or folder; check data.data_path (--data_path)", "missing file")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise DataError(str(path), f"folder has no data files ({', '.join(SUFFIXES)})", "missing file")
    return files


def read_records(files: list[Path]) -> Iterator[RawRecord]:
    """Every record of every file, in order, numbered across files."""
    ordinal = 0
    for path in files:
        try:
            for where, value, problem, kind in read_file(path):
                yield RawRecord(value, where, ordinal, problem, kind)
                ordinal += 1
        except OSError as err:
            raise DataError(str(path), f"cannot read the file: {err.strerror or err}", "unreadable file") from None


def read_file(path: Path) -> Iterator[tuple[str, object, str | None, str | None]]:
    """(where, value, problem, kind) for each record of one file, by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix == ".json" and _first_char(path) == "[":
        return _read_json_array(path)
    return _read_json_lines(path)


def _first_char(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1].decode("ascii", "replace")


def _read_json_lines(path: Path) -> Iterator[tuple[str, object, str | None, str | None]]:
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            value, problem, kind = parse_json_line(raw, first=lineno == 1)
            yield f"{path}:{lineno}", value, problem, kind


class _ArrayStream:
    """Walks a JSON array file element by element with json.JSONDecoder.raw_decode over a sliding buffer."""

    def __init__(self, path: Path, handle):
        self.path, self.handle = path, handle
        self.buf, self.pos, self.line, self.eof = "", 0, 1, False

    def fill(self) -> bool:
        """Read more text (at least as much again as is buffered); False at end of file."""
        if self.eof:
            return False
        if self.pos > ARRAY_READ_CHARS:
            self.buf, self.pos = self.buf[self.pos:], 0
        try:
            chunk = self.handle.read(max(ARRAY_READ_CHARS, len(self.buf) - self.pos))
        except UnicodeDecodeError as err:
            raise DataError(f"{self.path}:{self.line}", f"invalid UTF-8 ({err.reason})", "invalid UTF-8") from None
        self.eof = not chunk
        self.buf += chunk
        return bool(chunk)

    def skip_space(self) -> str:
        """Move past whitespace; the next character, or '' at end of file."""
        while True:
            start = self.pos
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n\ufeff":
                self.pos += 1
            self.line += self.buf.count("\n", start, self.pos)
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def expect(self, allowed: str, index: int) -> str:
        char = self.skip_space()
        if not char or char not in allowed:
            found = repr(char) if char else "end of file"
            raise DataError(f"{self.path}:{self.line} (record {index})",
                            f"broken JSON array: expected one of {list(allowed)}, found {found}", "invalid JSON")
        self.pos += 1
        return char

    def decode(self, index: int) -> object:
        while True:
            try:
                value, end = JSON_DECODER.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:
                    break
            except (ValueError, RecursionError) as err:
                if not self.eof:
                    self.fill()
                    continue
                raise DataError(f"{self.path}:{self.line} (record {index})",
                                f"invalid JSON: {_reason(err)}", "invalid JSON") from None
            if not self.fill():
                break
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end
        return value


def _reason(err: Exception) -> str:
    if isinstance(err, RecursionError):
        return "nested too deeply"
    return getattr(err, "msg", None) or str(err)


def _read_json_array(path: Path) -> Iterator[tuple[str, object, str | None, str | None]]:
    with open(path, encoding="utf-8", newline="") as handle:
        stream = _ArrayStream(path, handle)
        stream.expect("[", 0)
        if stream.skip_space() == "]":
            stream.pos += 1
        else:
            index = 0
            while True:
                stream.skip_space()
                where = f"{path}:{stream.line} (record {index})"
                yield where, stream.decode(index), None, None
                index += 1
                if stream.expect(",]", index) == "]":
                    break
        if stream.skip_space():
            raise DataError(f"{path}:{stream.line}", "unexpected text after the closing ']' of the JSON array",
                            "invalid JSON")


def _read_parquet(path: Path) -> Iterator[tuple[str, object, str | None, str | None]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(str(path), "reading Parquet needs pyarrow: pip install pyarrow", "missing library") from None
    try:
        reader = pq.ParquetFile(path)
        row = 0
        for batch in reader.iter_batches(batch_size=1024):
            for value in batch.to_pylist():
                yield f"{path}: row {row}", value, None, None
                row += 1
    except (OSError, ValueError) as err:  # pyarrow.ArrowException derives from these
        raise DataError(str(path), f"not a readable Parquet file: {err}", "invalid Parquet") from None

