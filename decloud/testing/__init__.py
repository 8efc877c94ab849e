"""Deterministic generators of small products in the real formats (THEIA folders and zips, ESA SAFE,
S1Tiling vv/vh pairs, DEMs) with chosen dates, clouds and no-data areas, for tests, benchmarks and
the demo. The same arguments always give the same bytes of pixel values.

A realistic scene comes from :mod:`decloud.testing.landscape` (farmland with crop phenologies, Sentinel-2
reflectances and Sentinel-1 backscatter), :mod:`decloud.testing.sky` (clouds, shadows, cirrus, cloud masks) and
:mod:`decloud.testing.noise` (the deterministic random fields both draw from)."""
