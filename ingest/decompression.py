"""How far a document's compressed parts inflate, measured before a parser inflates them, without keeping the output.

pdfium inflates a page's streams in full while it reads the page: a 1 MB PDF whose content stream inflates to 1 GB
took 2.1 GB of memory. So every stream a PDF page uses (its contents, forms, images, fonts, annotation appearances,
followed through indirect objects) is inflated here first, in pieces of at most 1 MB that are counted and dropped, and
a page or a file over its cap is refused before pdfium sees it. A DOCX is a ZIP: Python's zipfile never inflates a
member past its declared size, so the declared sizes are what is checked.
"""

from __future__ import annotations

import logging
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from ingest.types import IngestError

MB = 1024 * 1024
_PIECE = 1 << 20  # bytes of output per inflate call: the most this module holds at once

# pypdf logs every repaired cross-reference table as a warning; the checks here report what matters themselves.
logging.getLogger("pypdf").setLevel(logging.ERROR)


class DecompressionLimit(IngestError):
    """A file inflates past a configured cap (a decompression bomb, or a document too large to read safely)."""


def check_pdf(path: Path, *, page_limit_mb: float, file_limit_mb: float, pages: Iterable[int] | None = None,
              rendered: bool = False) -> int:
    """Raise DecompressionLimit if a page of the PDF (1-based `pages`, default all) inflates past `page_limit_mb` or
    the streams of those pages together past `file_limit_mb`; return the bytes they inflate to. `rendered`: the pages
    are to be drawn, so an image counts as the raster it declares (width x height x bits per pixel), which is what
    pdfium decodes it to (reading text, pdfium does not decode images: they count as their data)."""
    page_limit, file_limit = int(page_limit_mb * MB), int(file_limit_mb * MB)
    from pypdf import PdfReader  # lazy: pypdf takes ~0.2 s to import; only PDFs need it
    from pypdf.errors import LimitReachedError  # lazy: pypdf takes ~0.2 s to import; only PDFs need it

    try:
        import pypdf  # lazy: pypdf takes ~0.2 s to import; only PDFs need it

        # pypdf inflates object streams (which hold the PDF's dictionaries) itself: bounded by the page cap.
        with pypdf.apply_configuration(zlib_maximum_output_length=page_limit, lzw_maximum_output_length=page_limit,
                                       run_length_maximum_output_length=page_limit):
            reader = PdfReader(str(path), strict=False)
            if reader.is_encrypted and not _decrypt_empty(reader):
                return _check_raw(path, page_limit, file_limit)
            numbers = list(pages) if pages is not None else range(1, len(reader.pages) + 1)
            sizes: dict[tuple[int, int], int] = {}  # stream -> inflated bytes, each stream measured once
            total = 0
            for number in numbers:
                if not 1 <= number <= len(reader.pages):
                    continue
                page_bytes = 0
                for key, stream in _page_streams(reader.pages[number - 1]):
                    if key not in sizes:
                        sizes[key] = _inflated_size(stream, page_limit)
                        if rendered:
                            sizes[key] = max(sizes[key], _raster_size(stream))
                        total += sizes[key]
                    page_bytes += sizes[key]
                    if page_bytes > page_limit:
                        raise DecompressionLimit(path, _over("page", number, page_limit_mb, "max_decompressed_page_mb"))
                if total > file_limit:
                    raise DecompressionLimit(path, _over("file", number, file_limit_mb, "max_decompressed_file_mb"))
            return total
    except DecompressionLimit:
        raise
    except LimitReachedError as e:
        raise DecompressionLimit(path, f"a compressed object stream inflates past the {page_limit_mb:g} MB "
                                       f"limit (max_decompressed_page_mb; a decompression bomb?) ({e})") from e
    except RecursionError as e:
        raise IngestError(path, "PDF objects nested too deeply to read") from e
    except MemoryError:
        raise
    except Exception:  # pypdf cannot parse what pdfium may still open: measure every stream in the bytes instead
        return _check_raw(path, page_limit, file_limit)


def check_zip(path: Path, *, part_limit_mb: float, file_limit_mb: float) -> int:
    """Raise DecompressionLimit if a ZIP member (a DOCX part) declares more than `part_limit_mb` or all members more
    than `file_limit_mb`; return the declared total. zipfile stops reading a member at its declared size."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, NotImplementedError, OSError):
        return 0  # the reader names what is wrong with the archive
    total = 0
    for info in infos:
        if info.file_size > part_limit_mb * MB:
            raise DecompressionLimit(path, f"the part {info.filename} inflates to {info.file_size / MB:.0f} MB, "
                                           f"over the {part_limit_mb:g} MB limit (max_decompressed_page_mb; a "
                                           "decompression bomb?)")
        total += info.file_size
    if total > file_limit_mb * MB:
        raise DecompressionLimit(path, f"its parts inflate to {total / MB:.0f} MB, over the {file_limit_mb:g} MB "
                                       "limit (max_decompressed_file_mb; a decompression bomb?)")
    return total


def _over(what: str, page: int, limit_mb: float, setting: str) -> str:
    where = f"page {page} inflates" if what == "page" else f"its streams inflate (by page {page})"
    return (f"{where} to more than {limit_mb:g} MB of decompressed data, over the limit ({setting}, "
            f"COMPLY_{setting.upper()}; a decompression bomb?)")


def _decrypt_empty(reader) -> bool:
    """Whether an encrypted PDF opens without a password here (as pdfium will open it); False when pypdf cannot
    decrypt it (AES needs the cryptography package, a dependency of comply, so this means a damaged file)."""
    try:
        return bool(reader.decrypt(""))
    except Exception:
        return False


# Keys that lead away from the page: its parent in the page tree, an annotation's or structure element's page.
_SKIP_KEYS = frozenset({"/Parent", "/P", "/Pg"})
_MAX_OBJECTS = 200_000  # per page: a page that reaches more objects than this is refused rather than walked


def _page_streams(page) -> Iterator[tuple[tuple[int, int], object]]:
    """((object number, generation), stream) for every stream reachable from a page dictionary, each once; other
    pages are not entered."""
    from pypdf.generic import (  # lazy: pypdf takes ~0.2 s to import; only PDFs need it
        ArrayObject,
        DictionaryObject,
        IndirectObject,
        StreamObject,
    )

    seen: set[tuple[int, int]] = set()
    todo: list[tuple[object, tuple[int, int] | None]] = [(page, None)]
    walked = 0
    while todo:
        obj, ref = todo.pop()
        if isinstance(obj, IndirectObject):
            ref = (obj.idnum, obj.generation)
            if ref in seen:
                continue
            seen.add(ref)
            try:
                obj = obj.get_object()
            except (RecursionError, MemoryError):
                raise
            except Exception:
                continue  # a broken reference: pdfium skips it too
        walked += 1
        if walked > _MAX_OBJECTS:
            raise ValueError("too many objects on one page")
        if isinstance(obj, DictionaryObject):
            if obj is not page and obj.get("/Type") == "/Page":
                continue
            if isinstance(obj, StreamObject):
                yield ref or (-id(obj), 0), obj
            todo.extend((v, None) for k, v in obj.items() if k not in _SKIP_KEYS)
        elif isinstance(obj, ArrayObject):
            todo.extend((v, None) for v in obj)


_IMAGE_FILTERS = frozenset({"/DCTDecode", "/DCT", "/JPXDecode", "/CCITTFaxDecode", "/CCF", "/JBIG2Decode", "/Crypt"})


def _inflated_size(stream, limit: int) -> int:
    """Bytes `stream` decodes to, counted up to just past `limit` (image codecs count their input)."""
    from pypdf import filters as pdf_filters  # lazy: pypdf takes ~0.2 s to import; only PDFs need it

    raw = stream._data  # the encoded bytes (decrypted by pypdf where needed)
    names = stream.get("/Filter")
    names = [] if names is None else [names] if not isinstance(names, list) else list(names)
    pieces: Iterable[bytes] = _slices(raw, 0)
    for name in (str(n) for n in names):
        if name in ("/FlateDecode", "/Fl"):
            pieces = _inflate(pieces)
        elif name in _IMAGE_FILTERS:
            break
        else:
            decoder = {"/ASCIIHexDecode": pdf_filters.ASCIIHexDecode, "/AHx": pdf_filters.ASCIIHexDecode,
                       "/ASCII85Decode": pdf_filters.ASCII85Decode, "/A85": pdf_filters.ASCII85Decode,
                       "/LZWDecode": pdf_filters.LZWDecode, "/LZW": pdf_filters.LZWDecode,
                       "/RunLengthDecode": pdf_filters.RunLengthDecode, "/RL": pdf_filters.RunLengthDecode}.get(name)
            if decoder is None:
                break
            pieces = _whole(pieces, decoder, limit)
    total = 0
    try:
        for piece in pieces:
            total += len(piece)
            if total > limit:
                return total
    except (MemoryError, RecursionError):
        raise
    except Exception:
        pass  # damaged data: pdfium stops where the data breaks as well; what came out so far counts
    return total


_COMPONENTS = {"/DeviceGray": 1, "/CalGray": 1, "/G": 1, "/DeviceRGB": 3, "/CalRGB": 3, "/Lab": 3, "/RGB": 3,
               "/DeviceCMYK": 4, "/CMYK": 4}


def _raster_size(stream) -> int:
    """The bytes an image XObject declares it decodes to (0 for anything else): width x height x components x bits
    per component / 8, with 4 components where the colour space is not one of the plain ones (at most CMYK)."""
    try:
        if stream.get("/Subtype") != "/Image":
            return 0
        width, height = int(stream.get("/Width", 0)), int(stream.get("/Height", 0))
        bits = 1 if stream.get("/ImageMask") else int(stream.get("/BitsPerComponent", 8) or 8)
        space = stream.get("/ColorSpace")
        space = space.get_object() if hasattr(space, "get_object") else space
        components = 1 if stream.get("/ImageMask") else _COMPONENTS.get(str(space), 4)
        return max(0, width) * max(0, height) * components * max(1, bits) // 8
    except (TypeError, ValueError, AttributeError):
        return 0


def _inflate(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """zlib-inflate a stream given in pieces, yielding at most _PIECE bytes at a time; stops where the data breaks."""
    inflater = zlib.decompressobj()
    for piece in pieces:
        try:
            out = inflater.decompress(piece, _PIECE)
            while True:
                yield out
                if not inflater.unconsumed_tail:
                    break
                out = inflater.decompress(inflater.unconsumed_tail, _PIECE)
        except zlib.error:
            return
        if inflater.eof:
            return


def _whole(pieces: Iterable[bytes], decoder, limit: int) -> Iterator[bytes]:
    """A filter without a streaming decoder: its input is gathered (up to `limit`) and decoded in one go, with pypdf's
    own output limit set to `limit`."""
    import pypdf  # lazy: pypdf takes ~0.2 s to import; only PDFs need it

    data, size = [], 0
    for piece in pieces:
        data.append(piece)
        size += len(piece)
        if size > limit:  # the input alone is over the limit
            yield from data
            return
    with pypdf.apply_configuration(lzw_maximum_output_length=limit + 1, run_length_maximum_output_length=limit + 1):
        try:
            yield decoder.decode(b"".join(data))
        except pypdf.errors.LimitReachedError:
            yield b"\0" * (limit + 1)


_STREAM = re.compile(rb"stream\r?\n")


def _check_raw(path: Path, page_limit: int, file_limit: int) -> int:
    """For PDFs pypdf cannot walk: every zlib stream in the file's bytes, inflated once (and once more when its output
    is itself zlib data, as a doubly compressed bomb is); no stream over the page cap, all together not over the file
    cap."""
    data = path.read_bytes()
    total = 0
    for match in _STREAM.finditer(data):
        size = 0
        for piece in _raw_stages(data, match.end()):
            size += len(piece)
            if size > page_limit:
                break
        total += size
        if size > page_limit:
            raise DecompressionLimit(path, f"a stream inflates to more than {page_limit / MB:g} MB of decompressed "
                                           "data, over the limit (max_decompressed_page_mb; a decompression bomb?)")
        if total > file_limit:
            raise DecompressionLimit(path, f"its streams inflate to more than {file_limit / MB:g} MB of decompressed "
                                           "data, over the limit (max_decompressed_file_mb; a decompression bomb?)")
    return total


def _looks_zlib(head: bytes) -> bool:
    return len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


def _raw_stages(data: bytes, start: int) -> Iterator[bytes]:
    """The output of the zlib stream starting at `start`, inflated twice when it is zlib data again."""
    if not _looks_zlib(data[start:start + 2]):
        return
    first = _inflate(_slices(data, start))
    try:
        out = next(first)
    except StopIteration:
        return
    if _looks_zlib(out[:2]):
        yield from _inflate(_chain([out], first))
    else:
        yield out
        yield from first


def _slices(data: bytes, start: int, size: int = 1 << 16) -> Iterator[bytes]:
    """`data[start:]` in pieces of `size` bytes, so that zlib's unconsumed input stays small."""
    view = memoryview(data)
    for at in range(start, len(data), size):
        yield view[at:at + size]


def _chain(*parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield from part
