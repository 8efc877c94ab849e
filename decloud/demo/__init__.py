"""``decloud demo``: the whole chain on a synthetic tile made by :mod:`decloud.testing`, on a fresh install with
no data of the user's: generate the products, prepare them, split the tile into ROIs, write TFRecords, train a
small CRGA model, reconstruct the time series, and assess the result against the generator's cloud-free truth.

- :mod:`decloud.demo.scene`: the synthetic tile (dates, weather, raw products, cloud-free truth, class map);
- :mod:`decloud.demo.pipeline`: the stages, run with the project's own functions;
- :mod:`decloud.demo.assessment`: metrics on the tile;
- :mod:`decloud.demo.quicklook`: the quicklook PNG;
- :mod:`decloud.demo.main`: the command line.
"""
