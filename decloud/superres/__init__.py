"""Sentinel-2 single-image super-resolution: the ten bands at 5 m (x2, or x4), and the six 20 m bands at
10 m guided by the four 10 m bands, trained under the Wald protocol on real products, measured in the
spatial and frequency domains, and streamed over whole products with our models or models in the YAML+ONNX
format of the CESBIO ``sentinel2_superresolution`` tool."""
