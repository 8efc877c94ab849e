"""Satellite image time series: per-pixel series of prepared products stored chunked on disk, self-supervised
(Barlow Twins) encoders of those series, and the embedding maps they produce.

The sources of observations (prepared Sentinel-2 products today) are a parameter of the store and of the
encoders, so that a multimodal (Sentinel-1 + Sentinel-2) encoder can use the same layers.
"""
