"""decloud: reconstruct cloudy Sentinel-2 images with deep networks fed by Sentinel-1 and other dates."""

__version__ = "0.1.0"
