"""Input readers, one streaming pass per file, one item per input record (a `Skip` for what is not a record or
for damage). Web text: WARC / WET / WAT, ARC, JSON lines and arrays, Parquet and bare HTML -> `RawPage` (`iter_file`
sniffs the format). Dialogue (`dialogue`): sessions and thread posts from JSONL, ShareGPT, LCCC, KdConv and thread
dumps. Image-text (`image_text`): url lists, WebDataset tars (through `shards.tar`) and Parquet with image bytes.
All JSON goes through `jsonrecords`, all bytes through `bytesource` (caps while decompressing).

No Beam here: the Beam layer opens a file (`FileSystems.open(path, compression_type=UNCOMPRESSED)`) and iterates
the reader over the stream.
"""
from cleaners.document import RawPage
from pipelines.readers.formats import detect_format, iter_file
from pipelines.readers.skip import Skip

__all__ = ["RawPage", "Skip", "detect_format", "iter_file"]
