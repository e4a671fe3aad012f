"""Tokenized WebDataset shards: the deterministic tar shard writer (`writer`), the `manifest.json` beside them and its
`verify` (`manifest`), and the resumable streaming reader that packs them into training sequences (`reader`)."""
