"""Deterministic generators of small products in the real formats (THEIA folders and zips, ESA SAFE,
S1Tiling vv/vh pairs, DEMs) with chosen dates, clouds and no-data areas, for tests, benchmarks and
the demo. The same arguments always give the same bytes of pixel values."""
