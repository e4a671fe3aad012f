"""Dialogue records and the per-session cleaning rules (LCCC-style). No Beam here."""
