"""Input readers: WARC / WET / WAT, ARC, JSON lines and arrays, Parquet and bare HTML files -> `RawPage` / `Skip`.

No Beam here: the Beam layer opens a file (`FileSystems.open(path, compression_type=UNCOMPRESSED)`) and iterates
`iter_file(stream, path)`, which sniffs the format and streams one item per input record.
"""
from cleaners.document import RawPage
from pipelines.readers.formats import detect_format, iter_file
from pipelines.readers.skip import Skip

__all__ = ["RawPage", "Skip", "detect_format", "iter_file"]
