"""Per-record steps: extraction, normalization, PII, language ID, heuristic and quality filters. Never imports
apache_beam."""
