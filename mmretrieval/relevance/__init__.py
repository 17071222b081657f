"""Relevance: a score next to the raw cosine that means the same for every query and every pair of modalities.

- `profile.py`: what a random item scores for a query (the null, from a sample of each modality's vectors)
  and what the best match of a typical query scores (per pair of modalities, from the index's own items):
  the label-free basis of relevance.
- `calibration.py`: with labelled pairs (`mmr calibrate`), per pair of modalities, the probability that a
  hit is relevant given its null z-score.
- `cutoff.py`: keep hits at or above a relevance, or cut where the scores drop.
- `pairs.py`: observations from a pairs file (matched/random cosines, top-k hits with labels), shared by
  calibrate, audit and compare; `audit.py`, `compare.py`: the reports.
"""
