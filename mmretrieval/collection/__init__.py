"""Views of the whole collection: near-duplicates, clusters named zero-shot, outliers and a map (`engine.viewing`
gathers the vectors and rows; the modules here are the methods)."""
