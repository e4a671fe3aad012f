"""Everything that happens to one record, without Beam (never imports apache_beam): the record types, the step
protocol (`step`), the one runner (`runner`) and recipe loader (`recipe`); web-text extraction, normalization, PII,
language ID, heuristic filters (`filters/`) and the quality classifier; the dialogue rules, session splitting and
thread building (`dialogue/`); caption and image checks (`image/`); MinHash signatures and line hashing for the
dedup stages; the Han-character class (`han`)."""
