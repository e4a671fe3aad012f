"""URL normalization for URL deduplication: two captures of the same page get the same key.

Rules (RFC 3986 section 6 syntax-based normalization, plus what crawl dedup tools commonly add, e.g. the
tracking-parameter removal of Common Crawl's and ClueWeb's URL canonicalizers): lowercase scheme and host,
drop default ports, a trailing dot on the host and the fragment, resolve `.`/`..` path segments, remove
known tracking parameters (`utm_*`, `gclid`, `fbclid`, ...) and sort the rest, treat an empty path as `/`.
`http` and `https` are kept apart (they can serve different content); `www.` is kept (it is a different host).
"""
from __future__ import annotations

import posixpath
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
TRACKING_PARAMS = frozenset({"gclid", "fbclid", "msclkid", "yclid", "dclid", "spm", "share_token",
                             "_hsenc", "_hsmi", "mc_cid", "mc_eid", "igshid"})


def normalize_url(url: str) -> str:
    """The canonical form of `url`, or "" when it has no scheme and host (nothing to deduplicate on)."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if not scheme or not host:
        return ""
    netloc = host if port in (None, DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    path = parts.path or "/"
    normalized_path = posixpath.normpath(unquote(path))
    if path.endswith("/") and not normalized_path.endswith("/"):
        normalized_path += "/"
    if normalized_path.startswith("//"):
        normalized_path = "/" + normalized_path.lstrip("/")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not k.lower().startswith("utm_") and k.lower() not in TRACKING_PARAMS]
    return urlunsplit((scheme, netloc, quote(normalized_path, safe="/%:@!$&'()*+,;=~"), urlencode(sorted(query)), ""))
