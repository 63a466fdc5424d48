"""A multipart upload streamed to one file with a size limit: the ``file`` part of a
``multipart/form-data`` body is written while it arrives (never spooled elsewhere), and the
upload stops at the first byte over the limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from avfer.errors import AvferError

FIELD = b"file"
SLACK = 1 << 20  # bytes of a body beyond the file itself: boundaries, headers, other fields


class UploadError(AvferError):
    """An upload that cannot be taken; ``status``: the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def too_large(limit: int) -> UploadError:
    return UploadError(413, f"the upload is larger than the server's limit of {limit / 2**20:.3g} MB")


def check_length(request: Request, limit: int) -> None:
    """Refuse a body whose declared length is over the limit before reading it."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + SLACK:
        raise too_large(limit)


async def receive_file(request: Request, dest: Path, limit: int) -> str:
    """Write the ``file`` part of the request's multipart body to ``dest`` (at most ``limit``
    bytes); returns the client's file name. Raises :class:`UploadError` (400, 413)."""
    ctype, params = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(400, "expected a multipart/form-data body with the media in a field 'file'")
    part: dict[str, Any] = {"headers": {}, "field": [], "value": [], "ours": False}
    found: dict[str, Any] = {"name": None, "size": 0}

    with dest.open("wb") as out:

        def on_part_begin() -> None:
            part.update(headers={}, ours=False)

        def on_header_field(data: bytes, start: int, end: int) -> None:
            part["field"].append(data[start:end])

        def on_header_value(data: bytes, start: int, end: int) -> None:
            part["value"].append(data[start:end])

        def on_header_end() -> None:
            part["headers"][b"".join(part["field"]).lower()] = b"".join(part["value"]).strip()
            part["field"].clear()
            part["value"].clear()

        def on_headers_finished() -> None:
            _, opts = parse_options_header(part["headers"].get(b"content-disposition"))
            if opts.get(b"name") == FIELD and b"filename" in opts and found["name"] is None:
                part["ours"] = True
                found["name"] = opts[b"filename"].decode("utf-8", errors="replace")

        def on_part_data(data: bytes, start: int, end: int) -> None:
            if part["ours"]:
                found["size"] += end - start
                if found["size"] > limit:
                    raise too_large(limit)
                out.write(data[start:end])

        callbacks = {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        }
        parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit + SLACK:
                    raise too_large(limit)
                parser.write(chunk)
            parser.finalize()
        except FormParserError as exc:
            raise UploadError(400, f"malformed multipart body ({exc})") from None
        except ClientDisconnect:
            raise UploadError(400, "the client disconnected during the upload") from None
    if found["name"] is None:
        raise UploadError(400, "no file in the upload: send it as the multipart field 'file' (-F file=@CLIP)")
    return str(found["name"])
