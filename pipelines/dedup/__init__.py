"""Global deduplication stages (Beam shuffles): exact, URL, line/paragraph and MinHash-LSH fuzzy."""
