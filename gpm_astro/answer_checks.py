"""Files that hold a service's answer other than a table, found before they read as one.

A query saved to a file is not always a table: SkyServer answers an SQL error with a first line
``ERROR ...`` and a busy server with an HTML page, a batch of statements with several
``#TableN`` blocks in one CSV, and a TAP service an error with ``QUERY_STATUS = ERROR`` or a
result cut at its row limit with ``QUERY_STATUS = OVERFLOW`` after the table (IVOA DALI).
astropy reads most of these as a table of the wrong shape (a column named
``<!DOCTYPE html>``) or of too few rows; `gpm_astro.io.read_table` uses these checks to refuse
or flag them instead.
"""

import re
import warnings

from .exceptions import GPMAstroWarning, TableIOError

__all__ = ["check_answer", "check_read_answer", "starts_with_table_mark", "check_text_answer",
           "check_single_table", "votable_query_status", "warn_votable_overflow"]

#: bytes read from each end of a file to find what it is
_SNIFF_BYTES = 65536
#: SkyServer's SQL error line (the ``sqlcl`` client's test), not a header that names ERROR
_SQL_ERROR = re.compile(r"ERROR\b\s*[:\-\s]")
_TABLE_MARK = re.compile(r"\s*#?\s*Table\d+\s*$")
_QUERY_STATUS = re.compile(r"<INFO\b[^>]*\bQUERY_STATUS\b[^>]*>", re.IGNORECASE)
_VALUE = re.compile(r"\bvalue\s*=\s*[\"']([^\"']*)[\"']", re.IGNORECASE)


def _is_text(fmt):
    return fmt.startswith("ascii.") and fmt != "ascii.ecsv"


def check_answer(path, fmt):
    """Before reading ``path`` as astropy format ``fmt``: `TableIOError` for an HTML page or
    SkyServer's SQL error saved as a text table, or a TAP VOTable whose ``QUERY_STATUS`` is
    ``ERROR`` (the message quotes the service)."""
    if _is_text(fmt):
        check_text_answer(path)
    elif fmt == "votable":
        status, detail = votable_query_status(path)
        if status == "ERROR":
            msg = f"{str(path)!r} is a TAP service's error answer, not a table: {detail!r}"
            raise TableIOError(msg)


def check_read_answer(table, path, fmt, stacklevel=4):
    """After reading: `check_single_table` for a text table, `warn_votable_overflow` for a
    VOTable."""
    if _is_text(fmt):
        check_single_table(table, path)
    elif fmt == "votable":
        warn_votable_overflow(table, path, stacklevel=stacklevel)


def _head(path):
    with open(path, "rb") as handle:
        return handle.read(_SNIFF_BYTES).decode("utf-8", errors="replace")


def check_text_answer(path):
    """`TableIOError` when a text table file holds an HTML page, a VOTable or SkyServer's SQL
    error.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "answer.csv"
    >>> _ = path.write_text("ERROR: Incorrect syntax near 'FORM'.\\n")
    >>> check_text_answer(path)
    Traceback (most recent call last):
    ...
    gpm_astro.exceptions.TableIOError: ... holds a service's error message, not a table: ...
    """
    head = _head(path).lstrip("\ufeff \t\r\n")
    lowered = head[:512].lower()
    markup = lowered.startswith(("<!doctype", "<html", "<?xml"))
    if markup and "<html" in lowered:
        title = re.search(r"<title>(.*?)</title>", head, re.IGNORECASE | re.DOTALL)
        shown = " ".join(title.group(1).split()) if title else head[:200]
        msg = (f"{str(path)!r} is an HTML page (a service's error page?), not a table: "
               f"{shown!r}")
        raise TableIOError(msg)
    if markup and "<votable" in lowered:
        msg = (f"{str(path)!r} is a VOTable, not a text table: name it .vot or .xml, or pass "
               f"format='votable'")
        raise TableIOError(msg)
    lines = [line.strip() for line in head.splitlines()]
    first = next((line for line in lines if line and not line.startswith("#")), "")
    if _SQL_ERROR.match(first):
        msg = f"{str(path)!r} holds a service's error message, not a table: {first[:300]!r}"
        raise TableIOError(msg)


def starts_with_table_mark(path):
    """True when the file's first line is SkyServer's ``#Table1`` (its CSV answer).

    Only then are ``#`` lines comments to `gpm_astro.io.read_table`: a CSV of another origin
    may put its header line behind a ``#`` (``#ra,dec``), which must stay the header.
    """
    lines = _head(path).lstrip("\ufeff").splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    return first.startswith("#") and bool(_TABLE_MARK.match(first))


def check_single_table(table, path):
    """`TableIOError` when a CSV held several SkyServer tables (``#Table1``, ``#Table2``...):
    read as one, the second header would be a data row and every column text."""
    comments = table.meta.get("comments", [])
    marks = [c.strip() for c in comments if isinstance(c, str) and _TABLE_MARK.match(c)]
    if len(marks) > 1:
        msg = (f"{str(path)!r} holds {len(marks)} tables ({', '.join(marks)}), one after the "
               f"other; read_table reads one: split the file at the '#Table' lines")
        raise TableIOError(msg)


def votable_query_status(path):
    """The ``QUERY_STATUS`` a TAP service wrote in a VOTable, with its text, or (None, "").

    Only the first and last `_SNIFF_BYTES` of the file are read: DALI puts the INFO before
    the table (an error) or after it (an overflow).
    """
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF_BYTES)
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(size - _SNIFF_BYTES, len(head)))
        tail = handle.read()
    text = (head + b"\n" + tail).decode("utf-8", errors="replace")
    statuses = []
    for match in _QUERY_STATUS.finditer(text):
        value = _VALUE.search(match.group(0))
        if value:
            after = text[match.end():match.end() + 500]
            content = after.split("</INFO>", 1)[0] if "</INFO>" in after and \
                not match.group(0).endswith("/>") else ""
            statuses.append((value.group(1).upper(), " ".join(content.split())))
    for wanted in ("ERROR", "OVERFLOW"):
        for status in statuses:
            if status[0] == wanted:
                return status
    return statuses[0] if statuses else (None, "")


def warn_votable_overflow(table, path, stacklevel=3):
    """Warn (and say in ``table.meta["query_status"]``) when the VOTable was cut at the
    service's row limit: its rows are not the whole answer."""
    status, text = votable_query_status(path)
    if status != "OVERFLOW":
        return
    table.meta["query_status"] = "OVERFLOW"
    msg = (f"{str(path)!r} is a TAP answer cut at the service's row limit (QUERY_STATUS = "
           f"OVERFLOW{': ' + text if text else ''}): its {len(table)} rows are not all the "
           f"rows the query matched; query in smaller pieces or raise MAXREC")
    warnings.warn(msg, GPMAstroWarning, stacklevel=stacklevel)
