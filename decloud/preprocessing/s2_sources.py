"""Readers of raw Sentinel-2 L2A products, THEIA or ESA SAFE, folder or .zip.

Each reader finds the band and mask files of one product and serves, window by window, what a prepared
product holds: the 10 m and 20 m reflectance stacks (x10000, int16, no-data -10000) and the cloud and
no-data masks on the 10 m grid. A .zip is read in place through GDAL's /vsizip/, never unpacked.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ElementTree
import zipfile
from abc import ABC, abstractmethod
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from types import TracebackType

import numpy as np
from affine import Affine
from rasterio.io import DatasetReader
from rasterio.windows import Window

from decloud.core.constants import S2_BANDS_10M, S2_BANDS_20M, S2_NODATA
from decloud.core.errors import GridMismatchError, InputNotFoundError, ProductFormatError
from decloud.core.grid_20m import resample_bilinear, scaled_grid
from decloud.core.naming import S2ProductName, parse_s2_product_name
from decloud.core.raster import Grid, open_raster, read_window, require_same_grid


class ProductFiles:
    """The member files of a product folder or .zip, addressed by their path inside it."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise InputNotFoundError(path, "Sentinel-2 product")
        self.path = path
        self.is_zip = path.is_file()
        if self.is_zip:
            try:
                with zipfile.ZipFile(path) as archive:
                    self.members = [name for name in archive.namelist() if not name.endswith("/")]
            except zipfile.BadZipFile as error:
                if path.suffix.lower() != ".zip":
                    raise ProductFormatError(
                        f"{path} is not a Sentinel-2 product: expected a THEIA or SAFE product folder or its .zip"
                    ) from None
                raise ProductFormatError(f"{path} is not a readable .zip archive: {error}") from error
        else:
            self.members = sorted(
                str(PurePosixPath(Path(root, name).relative_to(path).as_posix()))
                for root, _, names in os.walk(path)
                for name in names
            )

    def find(self, pattern: str) -> list[str]:
        """Members whose path matches the regular expression ``pattern`` (searched, case-sensitive)."""
        expression = re.compile(pattern)
        return [member for member in self.members if expression.search(member)]

    def gdal_path(self, member: str) -> str:
        """The path GDAL opens to read ``member``."""
        if self.is_zip:
            return f"/vsizip/{self.path.resolve()}/{member}"
        return str(self.path / member)

    def read_bytes(self, member: str) -> bytes:
        if self.is_zip:
            with zipfile.ZipFile(self.path) as archive:
                return archive.read(member)
        return (self.path / member).read_bytes()


class S2Source(ABC):
    """An open raw Sentinel-2 product. Use as a context manager; windows are on its own grids."""

    def __init__(self, files: ProductFiles, name: S2ProductName) -> None:
        self.files = files
        self.name = name
        self._stack = ExitStack()
        self.bands_10m: list[DatasetReader] = []
        self.bands_20m: list[DatasetReader] = []

    def _open_bands(self, band_members_10m: list[str], band_members_20m: list[str]) -> None:
        self.bands_10m = [self._open(member) for member in band_members_10m]
        self.bands_20m = [self._open(member) for member in band_members_20m]
        require_same_grid(self.bands_10m)
        require_same_grid(self.bands_20m)
        grid_10m, source_20m = self.grid_10m, self.source_grid_20m
        expected = scaled_grid(grid_10m)
        if source_20m.crs != grid_10m.crs or not source_20m.transform.almost_equals(
            Affine(expected.transform.a, 0, source_20m.transform.c, 0, expected.transform.e, source_20m.transform.f)
        ):
            raise GridMismatchError(
                f"{self.bands_20m[0].name} ({source_20m.describe()}) is not a 20 m grid of the CRS of "
                f"{self.bands_10m[0].name} ({grid_10m.describe()})"
            )

    def _open(self, member: str) -> DatasetReader:
        return self._stack.enter_context(open_raster(self.files.gdal_path(member)))

    def _single(self, pattern: str, what: str) -> str:
        """The one member matching ``pattern``; a missing file is named by what was looked for."""
        found = self.files.find(pattern)
        if not found:
            raise InputNotFoundError(f"{self.files.path} (no file matching {pattern!r})", what)
        if len(found) > 1:
            raise ProductFormatError(f"{self.files.path}: several files for {what}: {', '.join(found)}")
        return found[0]

    @property
    def grid_10m(self) -> Grid:
        return Grid.of(self.bands_10m[0])

    @property
    def source_grid_20m(self) -> Grid:
        """The grid of the product's own 20 m files (its origin may be off the 10 m grid)."""
        return Grid.of(self.bands_20m[0])

    @property
    def grid_20m(self) -> Grid:
        """The grid of the prepared 20 m stack: the 20 m grid of the 10 m grid (:mod:`decloud.core.grid_20m`)."""
        return scaled_grid(self.grid_10m)

    def __enter__(self) -> S2Source:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stack.close()

    @staticmethod
    def _read_stack(bands: list[DatasetReader], window: Window) -> np.ndarray:
        return np.stack([read_window(band, window, 1) for band in bands])

    @abstractmethod
    def read_10m(self, window: Window) -> np.ndarray:
        """(4, rows, cols) int16 reflectances x10000 of B2, B3, B4, B8; -10000 where no data."""

    def read_20m(self, window: Window) -> np.ndarray:
        """(6, rows, cols) int16 reflectances x10000 of B5, B6, B7, B8A, B11, B12 over ``window`` of
        :attr:`grid_20m`; -10000 where no data. Bands on another origin are resampled bilinearly."""
        if self.source_grid_20m.same_as(self.grid_20m):
            return self._read_source_20m(window)
        values = resample_bilinear(
            self._read_source_20m, self.source_grid_20m, self.grid_20m, window, S2_NODATA, len(self.bands_20m)
        )
        return values.astype(np.int16)

    @abstractmethod
    def _read_source_20m(self, window: Window) -> np.ndarray:
        """Like :meth:`read_20m`, over ``window`` of the product's own 20 m grid :attr:`source_grid_20m`."""

    @abstractmethod
    def read_masks(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(cloud mask, no-data mask) uint8 on the 10 m grid; non-zero means cloudy / no data."""


class TheiaSource(S2Source):
    """A THEIA (MAJA) L2A product: ``<NAME>_FRE_<band>.tif`` files and ``MASKS/<NAME>_{CLM,EDG}_R1.tif``."""

    def __init__(self, files: ProductFiles) -> None:
        b2 = files.find(r"_FRE_B2\.tif$")
        super().__init__(files, parse_s2_product_name(PurePosixPath(b2[0]).name.removesuffix("_FRE_B2.tif")))
        prefix = re.escape(self.name.name)
        try:
            self._open_bands(
                [self._single(rf"{prefix}_FRE_{band}\.tif$", f"band {band}") for band in S2_BANDS_10M],
                [self._single(rf"{prefix}_FRE_{band}\.tif$", f"band {band}") for band in S2_BANDS_20M],
            )
            self.clm = self._open(self._single(rf"{prefix}_CLM_R1\.tif$", "cloud mask CLM_R1"))
            self.edg = self._open(self._single(rf"{prefix}_EDG_R1\.tif$", "edge mask EDG_R1"))
            require_same_grid([self.bands_10m[0], self.clm, self.edg])
        except BaseException:
            self._stack.close()
            raise

    def read_10m(self, window: Window) -> np.ndarray:
        return self._read_stack(self.bands_10m, window)

    def _read_source_20m(self, window: Window) -> np.ndarray:
        return self._read_stack(self.bands_20m, window)

    def read_masks(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        return read_window(self.clm, window, 1), read_window(self.edg, window, 1)


#: SCL classes counted as cloud: cloud shadow, cloud medium and high probability, thin cirrus.
SCL_CLOUD_CLASSES = (3, 8, 9, 10)
#: SCL class of no-data pixels.
SCL_NODATA = 0
#: BOA offset of processing baselines 04.00 and later, when the metadata file does not give it.
DEFAULT_BOA_OFFSET_SINCE_BASELINE_4 = -1000


class SafeSource(S2Source):
    """An ESA L2A ``.SAFE`` product: JPEG2000 bands in GRANULE/*/IMG_DATA/R10m and R20m, SCL at 20 m.

    Digital numbers are turned into THEIA-like values: DN + BOA offset (baselines 04.00+), DN 0 is
    no data (-10000). The cloud mask is the SCL class where it is a cloud class, the no-data mask is
    SCL 0, both repeated 2x2 onto the 10 m grid.
    """

    def __init__(self, files: ProductFiles) -> None:
        b02 = self._find_band(files, "R10m", "B02", "10m")
        safe_dirs = [part for part in PurePosixPath(b02).parts if part.endswith(".SAFE")]
        super().__init__(files, parse_s2_product_name(safe_dirs[0] if safe_dirs else files.path.name))
        try:
            self._open_bands(
                [self._find_band(files, "R10m", f"B{band[1:]:0>2}", "10m") for band in S2_BANDS_10M],
                [self._find_band(files, "R20m", f"B{band[1:]:0>2}", "20m") for band in S2_BANDS_20M],
            )
            self.scl = self._open(self._find_band(files, "R20m", "SCL", "20m"))
            require_same_grid([self.bands_20m[0], self.scl])
            if 2 * self.scl.width < self.grid_10m.width or 2 * self.scl.height < self.grid_10m.height:
                raise GridMismatchError(f"{self.scl.name} does not cover the 10 m grid of {self.bands_10m[0].name}")
            self.boa_offset = self._boa_offset()
        except BaseException:
            self._stack.close()
            raise

    @staticmethod
    def _find_band(files: ProductFiles, folder: str, band: str, resolution: str) -> str:
        found = files.find(rf"IMG_DATA/{folder}/[^/]*_{band}_{resolution}\.jp2$")
        if len(found) != 1:
            what = "no file" if not found else "several files"
            raise InputNotFoundError(f"{files.path} ({what} for {band} in IMG_DATA/{folder})", f"band {band}")
        return found[0]

    def _boa_offset(self) -> int:
        """The BOA_ADD_OFFSET of the product metadata, else the one implied by the processing baseline."""
        metadata = self.files.find(r"MTD_MSIL2A\.xml$")
        if metadata:
            root = ElementTree.fromstring(self.files.read_bytes(metadata[0]))
            offsets = {int(element.text or 0) for element in root.iter() if element.tag.endswith("BOA_ADD_OFFSET")}
            if len(offsets) > 1:
                raise ProductFormatError(f"{metadata[0]}: different BOA offsets per band are not supported: {offsets}")
            if offsets:
                return offsets.pop()
        baseline = self.name.processing_baseline or (0, 0)
        return DEFAULT_BOA_OFFSET_SINCE_BASELINE_4 if baseline >= (4, 0) else 0

    def _to_reflectance(self, digital_numbers: np.ndarray) -> np.ndarray:
        values = digital_numbers.astype(np.int32) + self.boa_offset
        values = np.clip(values, np.iinfo(np.int16).min + 1, np.iinfo(np.int16).max)
        return np.where(digital_numbers == 0, S2_NODATA, values).astype(np.int16)

    def read_10m(self, window: Window) -> np.ndarray:
        return self._to_reflectance(self._read_stack(self.bands_10m, window))

    def _read_source_20m(self, window: Window) -> np.ndarray:
        return self._to_reflectance(self._read_stack(self.bands_20m, window))

    def read_masks(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        if window.col_off % 2 or window.row_off % 2:
            raise ProductFormatError(f"{window} does not start on an even pixel of the 10 m grid")
        scl_window = Window(
            window.col_off // 2, window.row_off // 2, math.ceil(window.width / 2), math.ceil(window.height / 2)
        )
        scl = read_window(self.scl, scl_window, 1)
        scl = scl.repeat(2, axis=0).repeat(2, axis=1)[: window.height, : window.width]
        cloud = np.where(np.isin(scl, SCL_CLOUD_CLASSES), scl, 0).astype(np.uint8)
        nodata = (scl == SCL_NODATA).astype(np.uint8)
        return cloud, nodata


def open_s2_source(path: str | os.PathLike[str]) -> S2Source:
    """Open a THEIA or SAFE product (folder or .zip); an unknown layout is a :class:`ProductFormatError`."""
    files = ProductFiles(Path(path))
    if files.find(r"_FRE_B2\.tif$"):
        return TheiaSource(files)
    if files.find(r"IMG_DATA/R10m/[^/]*_B02_10m\.jp2$"):
        return SafeSource(files)
    raise ProductFormatError(
        f"{path} is neither a THEIA L2A product (no *_FRE_B2.tif) nor an ESA L2A .SAFE product "
        "(no GRANULE/*/IMG_DATA/R10m/*_B02_10m.jp2)"
    )
