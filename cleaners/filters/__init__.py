"""Heuristic filters: WuDao's Chinese rules, Gopher, C4 and FineWeb rules for English, and term lists.

Importing this package registers every step: wudao_zh, wordlist, gopher_quality, gopher_repetition,
c4, fineweb.
"""
from cleaners.filters import c4, fineweb, gopher, wordlist, wudao_zh  # noqa: F401
