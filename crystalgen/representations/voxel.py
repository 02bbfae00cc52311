"""Voxel images of crystals (iMatGen-style, written in-house), invertible without any network.

**Cell.** The crystal is Niggli-reduced. Its *cell image* is one dummy atom at the origin, drawn as
a Gaussian of fixed Cartesian width :attr:`VoxelConfig.cell_width` (Å), summed over its periodic
images and sampled on a fractional ``cell_grid``³ grid. In fractional coordinates that Gaussian is
``exp(-f·G·f / 2σ²)``: its shape *is* the metric tensor ``G``, which the decoder fits back (a
log-quadratic least-squares start, refined on the periodic model), and ``G`` fixes the lattice up
to a rotation. iMatGen instead draws the eight cell corners in a Cartesian box, which needs a box
large enough for the largest cell and loses resolution on small ones; the fractional blob has
neither problem and keeps both images on the same periodic grid.

**Basis.** One channel per element, each atom a Gaussian of width :attr:`VoxelConfig.width`
*voxels* on a periodic fractional ``grid``³ grid (so the image does not change with the cell's
scale, and a 3D convolution with circular padding sees the crystal's periodicity). Per-element
channels keep atoms of different elements apart however close they sit; two atoms of one element
closer than about two widths merge into one peak, which is what limits the round trip (see
``docs/voxel.md`` for the resolution and width sweep).

**Decoder.** Per channel, periodic local maxima above :attr:`VoxelConfig.peak_threshold`, refined
to sub-voxel precision from the log-values of their axis neighbours (exact for a sampled Gaussian);
a peak within :attr:`VoxelConfig.merge_distance` (Å, any channel) of a stronger one is dropped as its duplicate;
with a composition, each element keeps its strongest peaks up to its count, and too few is a
failure. Generated images can describe no crystal, so the decoder can fail, with a cause from
:attr:`VoxelError.CAUSES`.

**Storage.** Values below :attr:`VoxelConfig.threshold` are dropped; the rest are kept as
``(channel, flat voxel, value)``: float16 values for the basis (7 bytes per stored voxel), float32
for the one small cell image, whose precision sets the lattice's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.representations.base import DecodeFailure
from crystalgen.representations.cell import niggli_cell

#: Periodic images per lattice vector summed into the cell image: with each voxel at its minimal
#: image, the next ones are at least 1.5 d-spacings away, where a 0.6 Å Gaussian is below 1e-5 for
#: any Niggli cell whose planes are 2 Å apart.
CELL_IMAGES = 1
#: Cell-image voxels at least this fraction of the peak enter the lattice fit.
CELL_FIT_LEVEL = 0.01
#: A linear fit that reproduces the cell image to within this fraction of its peak (float32
#: rounding, far below what moves a length by 1e-4) is kept; otherwise it is refined on the periodic model.
CELL_FIT_TOLERANCE = 1e-6
#: The cell image resolves a lattice vector while its blob is at least this many voxels wide along
#: it (cell_width * cell_grid / length); a longer fitted vector is a fit the grid cannot support.
MIN_BLOB_VOXELS = 0.4
#: A fitted cell image whose RMS residual is above this fraction of the image's RMS is no single
#: periodic Gaussian: the image describes no lattice.
CELL_FIT_MAX_RESIDUAL = 0.25
#: Floor for log-values of a peak's neighbours that were below the storage threshold.
LOG_FLOOR = 1e-6


class VoxelError(DecodeFailure):
    """A voxel image that describes no crystal; ``cause`` says which step failed."""

    CAUSES = ("lattice", "no atoms", "atom count", "composition")


@dataclass(frozen=True)
class VoxelConfig:
    #: Basis grid points per lattice vector.
    grid: int = 32
    #: Width (standard deviation) of an atom's Gaussian, in basis voxels.
    width: float = 1.0
    #: Cell-image grid points per lattice vector.
    cell_grid: int = 16
    #: Width of the cell image's dummy atom, in Å.
    cell_width: float = 0.6
    #: Stored values below this are dropped.
    threshold: float = 1e-3
    #: Local maxima of a basis channel below this are noise, not atoms (an atom's own peak voxel
    #: is at least exp(-3/8) ≈ 0.69 at width 1).
    peak_threshold: float = 0.3
    #: Peaks closer than this (Å) are one atom.
    merge_distance: float = 0.5

    def __post_init__(self) -> None:
        if self.grid < 4 or self.cell_grid < 4:
            raise CrystalgenInputError("voxel grids need at least 4 points per axis")
        if self.width <= 0 or self.cell_width <= 0:
            raise CrystalgenInputError("voxel Gaussian widths must be positive")


@dataclass(frozen=True)
class SparseGrid:
    """Channels of a periodic ``size``³ grid, keeping only stored voxels."""

    size: int
    #: Per channel, what it stands for (atomic numbers for a basis image, [0] for a cell image).
    labels: np.ndarray
    channel: np.ndarray  # (nnz,) uint8 index into labels
    voxel: np.ndarray  # (nnz,) int32 flat index into size³
    value: np.ndarray  # (nnz,) float16 or float32

    @classmethod
    def from_values(cls, size: int, labels: np.ndarray, channel: np.ndarray, voxel: np.ndarray,
                    value: np.ndarray, threshold: float, dtype: type = np.float16) -> "SparseGrid":
        """Sum values that land on the same (channel, voxel), then drop those below ``threshold``."""
        key, inverse = np.unique(channel.astype(np.int64) * size ** 3 + voxel, return_inverse=True)
        summed = np.bincount(inverse.ravel(), weights=value.ravel())
        keep = summed >= threshold
        return cls(size, np.asarray(labels, dtype=np.int64), (key[keep] // size ** 3).astype(np.uint8),
                   (key[keep] % size ** 3).astype(np.int32), summed[keep].astype(dtype))

    def dense(self, labels: np.ndarray | None = None) -> np.ndarray:
        """(channels, size, size, size) float32, channels in the order of ``labels`` (default: own);
        a label missing from ``labels`` is a ValueError."""
        labels = self.labels if labels is None else np.asarray(labels)
        order = {int(z): i for i, z in enumerate(labels)}
        missing = [int(z) for z in self.labels if int(z) not in order]
        if missing:
            raise ValueError(f"channels {missing} are not among the {len(labels)} requested")
        remap = np.array([order[int(z)] for z in self.labels], dtype=np.int64)
        out = np.zeros((len(labels), self.size ** 3), dtype=np.float32)
        out[remap[self.channel], self.voxel] = self.value
        return out.reshape(len(labels), self.size, self.size, self.size)

    @property
    def nbytes(self) -> int:
        return self.channel.nbytes + self.voxel.nbytes + self.value.nbytes


@dataclass(frozen=True)
class VoxelImage:
    cell: SparseGrid
    basis: SparseGrid

    @property
    def nbytes(self) -> int:
        return self.cell.nbytes + self.basis.nbytes


def _fractional_grid(size: int) -> np.ndarray:
    """(size³, 3) fractional coordinates of a grid's voxels, as the minimal image in [-0.5, 0.5)."""
    axis = np.arange(size) / size
    axis = np.where(axis >= 0.5, axis - 1.0, axis)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def _periodic_gaussian(metric: np.ndarray, frac: np.ndarray, images: np.ndarray, width: float) -> np.ndarray:
    """``sum_n exp(-(f+n)·G·(f+n) / 2 width²)`` at each row of ``frac``."""
    shifted = frac[:, None, :] + images[None, :, :]
    return np.exp(-np.einsum("vni,ij,vnj->vn", shifted, metric, shifted) / (2 * width ** 2)).sum(axis=1)


def _quadratic_terms(frac: np.ndarray) -> np.ndarray:
    """(n, 6) products f_i f_j in the order of :data:`_METRIC_INDEX` (off-diagonals counted twice)."""
    f0, f1, f2 = frac.T
    return np.stack([f0 * f0, f1 * f1, f2 * f2, 2 * f0 * f1, 2 * f0 * f2, 2 * f1 * f2], axis=1)


_METRIC_INDEX = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def _metric_from_vector(vector: np.ndarray) -> np.ndarray:
    metric = np.empty((3, 3))
    for k, (i, j) in enumerate(_METRIC_INDEX):
        metric[i, j] = metric[j, i] = vector[k]
    return metric


class Voxel:
    """The ``voxel`` representation: :class:`VoxelImage` s of a cell and a per-element basis."""

    name = "voxel"
    decoder_can_fail = True

    def __init__(self, config: VoxelConfig | None = None) -> None:
        self.config = config or VoxelConfig()

    @cached_property
    def _cell_frac(self) -> np.ndarray:
        return _fractional_grid(self.config.cell_grid)

    @cached_property
    def _cell_images(self) -> np.ndarray:
        span = np.arange(-CELL_IMAGES, CELL_IMAGES + 1)
        return np.stack(np.meshgrid(span, span, span, indexing="ij"), axis=-1).reshape(-1, 3).astype(float)

    @cached_property
    def _window(self) -> np.ndarray:
        """Voxel offsets around an atom's nearest voxel where its Gaussian can reach the threshold."""
        reach = int(np.ceil(self.config.width * np.sqrt(2 * np.log(1 / self.config.threshold))))
        span = np.arange(-reach, reach + 1)
        return np.stack(np.meshgrid(span, span, span, indexing="ij"), axis=-1).reshape(-1, 3)

    # ------------------------------------------------------------------ encoding
    def encode(self, crystal: Crystal) -> VoxelImage:
        reduced = niggli_cell(crystal)
        return VoxelImage(self.cell_image(reduced.lattice), self.basis_image(reduced))

    def cell_image(self, lattice: np.ndarray) -> SparseGrid:
        c = self.config
        metric = lattice @ lattice.T
        values = _periodic_gaussian(metric, self._cell_frac, self._cell_images, c.cell_width)
        zeros = np.zeros(len(values), dtype=np.int64)
        # float32: one small image per crystal, and float16 rounding would move the fitted lengths by ~0.1%
        return SparseGrid.from_values(c.cell_grid, np.array([0]), zeros, np.arange(len(values)), values, c.threshold,
                                      np.float32)

    def basis_image(self, crystal: Crystal) -> SparseGrid:
        c, size = self.config, self.config.grid
        elements, channel = np.unique(crystal.atomic_numbers, return_inverse=True)
        position = crystal.frac_coords * size  # in voxel units
        nearest = np.floor(position + 0.5).astype(np.int64)
        voxels = nearest[:, None, :] + self._window[None, :, :]  # (atoms, window, 3)
        offset = voxels - position[:, None, :]
        values = np.exp(-(offset ** 2).sum(-1) / (2 * c.width ** 2))
        wrapped = np.mod(voxels, size)
        flat = (wrapped[..., 0] * size + wrapped[..., 1]) * size + wrapped[..., 2]
        channels = np.broadcast_to(channel.reshape(-1)[:, None], flat.shape)
        return SparseGrid.from_values(size, elements, channels, flat, values, c.threshold)

    # ------------------------------------------------------------------ decoding
    def decode(self, encoded: VoxelImage, composition: dict[int, int] | None = None) -> Crystal:
        return self.decode_dense(encoded.cell.dense()[0], encoded.basis.dense(), encoded.basis.labels, composition)

    def decode_dense(self, cell: np.ndarray, basis: np.ndarray, elements: np.ndarray,
                     composition: dict[int, int] | None = None) -> Crystal:
        """A crystal from a dense cell image (cell_grid³), basis channels (K, grid³) and the atomic
        number of each channel; ``composition`` ({Z: count}) checks and trims the atoms found."""
        lattice = self.lattice_from_image(cell)
        frac, numbers, heights = self.peaks(basis, np.asarray(elements))
        if len(numbers) == 0:
            raise VoxelError("no atoms", "no basis peak above the threshold")
        keep = self._merge(frac, heights, lattice)
        frac, numbers, heights = frac[keep], numbers[keep], heights[keep]
        if composition is not None:
            keep = self._trim_to(composition, numbers, heights)
            frac, numbers = frac[keep], numbers[keep]
        return Crystal(lattice, frac, numbers)

    def lattice_from_image(self, cell: np.ndarray) -> np.ndarray:
        """The lattice (rows, lower-triangular) whose cell image fits ``cell`` best.

        Two linear fits of the metric, and the one whose periodic model reproduces the image better
        is kept: log-values of the bright voxels are quadratic in f (exact while neighbouring
        images do not overlap: large cells), and log-values of the image's Fourier coefficients
        are quadratic in the integer frequency h, ``-2π²σ² h·G⁻¹·h`` (exact while the grid does not
        alias the blob: small cells). Where neither reproduces the image to its float16 precision
        (a generated image, say), least squares on the periodic model refines the better one.
        """
        from scipy.optimize import least_squares

        c = self.config
        values = np.asarray(cell, dtype=np.float64).reshape(-1)
        peak = values.max(initial=0.0)
        if not np.isfinite(peak) or peak <= 0:
            raise VoxelError("lattice", "the cell image is empty")
        support = values >= CELL_FIT_LEVEL * peak
        shifted = self._cell_frac[support][:, None, :] + self._cell_images[None, :, :]  # (voxels, images, 3)
        target, rows, cols = values[support], *np.tril_indices(3)
        scale = 2 * c.cell_width ** 2

        def terms(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            lower = np.zeros((3, 3))
            lower[rows, cols] = params[1:]
            projected = shifted @ lower  # (f+n)·L, whose squared norm is (f+n)·G·(f+n)
            return np.exp(-(projected ** 2).sum(-1) / scale), projected

        def residual(params: np.ndarray) -> np.ndarray:
            return params[0] * terms(params)[0].sum(1) - target

        def jacobian(params: np.ndarray) -> np.ndarray:
            gauss, projected = terms(params)
            # d/dL_ab of |(f+n)·L|² is 2 (f+n)_a ((f+n)·L)_b
            d_lower = -2 / scale * np.einsum("vn,vna,vnb->vab", gauss, shifted, projected)[:, rows, cols]
            return np.hstack([gauss.sum(1, keepdims=True), params[0] * d_lower])

        starts = []
        for metric in (self._real_space_metric(values, support), self._fourier_metric(values)):
            if not np.isfinite(metric).all():
                continue
            try:
                lower = np.linalg.cholesky(metric)
            except np.linalg.LinAlgError:
                continue
            params = np.concatenate([[1.0], lower[rows, cols]])
            gauss_sum = terms(params)[0].sum(1)
            params[0] = float(gauss_sum @ target / max(gauss_sum @ gauss_sum, 1e-300))  # best amplitude
            starts.append((np.abs(residual(params)).max(), params))
        if not starts:
            raise VoxelError("lattice", "the cell image's shape is no metric (not positive definite)")
        error, fitted = min(starts, key=lambda s: s[0])
        if error > CELL_FIT_TOLERANCE * peak:
            fitted = least_squares(residual, fitted, jac=jacobian, x_scale="jac").x
        misfit = np.sqrt(np.mean(residual(fitted) ** 2) / np.mean(target ** 2))
        if not np.isfinite(misfit) or misfit > CELL_FIT_MAX_RESIDUAL:
            raise VoxelError("lattice", f"the cell image is no periodic Gaussian (residual {misfit:.2f} of its RMS)")
        lower = np.zeros((3, 3))
        lower[rows, cols] = fitted[1:]
        try:
            lattice = np.linalg.cholesky(lower @ lower.T)
        except np.linalg.LinAlgError:
            raise VoxelError("lattice", "the fitted metric is not positive definite") from None
        if abs(np.linalg.det(lattice)) < 1e-6:
            raise VoxelError("lattice", "the fitted cell has no volume")
        longest = c.cell_width * c.cell_grid / MIN_BLOB_VOXELS
        if np.linalg.norm(lattice, axis=1).max() > longest:
            raise VoxelError("lattice", f"a fitted cell length beyond the {longest:.1f} Å a {c.cell_grid}³ cell image "
                                        "resolves")
        return lattice

    def _real_space_metric(self, values: np.ndarray, support: np.ndarray) -> np.ndarray:
        if support.sum() < 7:
            return np.zeros((3, 3))
        design = np.hstack([np.ones((int(support.sum()), 1)), -_quadratic_terms(self._cell_frac[support])])
        solution, *_ = np.linalg.lstsq(design, np.log(values[support]), rcond=None)
        return _metric_from_vector(solution[1:] * 2 * self.config.cell_width ** 2)

    def _fourier_metric(self, values: np.ndarray) -> np.ndarray:
        size = self.config.cell_grid
        coefficients = np.fft.fftn(values.reshape(size, size, size)).real.reshape(-1)
        if coefficients[0] <= 0:
            return np.zeros((3, 3))
        usable = coefficients >= CELL_FIT_LEVEL * coefficients[0]
        if usable.sum() < 7:
            return np.zeros((3, 3))
        frequency = self._cell_frac[usable] * size  # integer h, minimal image
        design = np.hstack([np.ones((int(usable.sum()), 1)), -_quadratic_terms(frequency)])
        solution, *_ = np.linalg.lstsq(design, np.log(coefficients[usable]), rcond=None)
        reciprocal = _metric_from_vector(solution[1:] / (2 * np.pi ** 2 * self.config.cell_width ** 2))
        try:
            return np.linalg.inv(reciprocal)
        except np.linalg.LinAlgError:
            return np.zeros((3, 3))

    def peaks(self, basis: np.ndarray, elements: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fractional positions, atomic numbers and heights of every channel's periodic local maxima."""
        from scipy.ndimage import maximum_filter

        c, size = self.config, self.config.grid
        basis = np.asarray(basis, dtype=np.float64)
        local_max = maximum_filter(basis, size=(1, 3, 3, 3), mode="wrap")
        found = np.argwhere((basis == local_max) & (basis > c.peak_threshold))  # (peaks, 4): channel, i, j, k
        channel, index = found[:, 0], found[:, 1:]
        log_value = np.log(np.maximum(basis, LOG_FLOOR))
        centre = log_value[tuple(found.T)]
        shift = np.zeros((len(found), 3))
        for axis in range(3):
            step = np.zeros(3, dtype=np.int64)
            step[axis] = 1
            below = log_value[(channel, *np.mod(index - step, size).T)]
            above = log_value[(channel, *np.mod(index + step, size).T)]
            curvature = below - 2 * centre + above
            with np.errstate(divide="ignore", invalid="ignore"):
                shift[:, axis] = np.where(curvature < 0, (below - above) / (2 * curvature), 0.0)
        frac = np.mod((index + np.clip(shift, -0.5, 0.5)) / size, 1.0)
        return frac, elements[channel].astype(np.int64), basis[tuple(found.T)]

    def _merge(self, frac: np.ndarray, heights: np.ndarray, lattice: np.ndarray) -> np.ndarray:
        """Indices of the peaks that no stronger peak lies within merge_distance of."""
        delta = frac[:, None, :] - frac[None, :, :]
        delta -= np.round(delta)
        close = np.linalg.norm(delta @ lattice, axis=-1) < self.config.merge_distance
        order = np.argsort(np.argsort(-heights, kind="stable"))  # rank 0 = strongest, ties by position
        stronger = order[None, :] < order[:, None]
        return np.flatnonzero(~(close & stronger).any(axis=1))

    @staticmethod
    def _trim_to(composition: dict[int, int], numbers: np.ndarray, heights: np.ndarray) -> np.ndarray:
        stray = sorted(set(numbers.tolist()) - set(composition))
        if stray:
            raise VoxelError("composition", f"peaks of elements {stray} that the composition does not have")
        keep = []
        for z, count in composition.items():
            mine = np.flatnonzero(numbers == z)
            if len(mine) < count:
                raise VoxelError("atom count", f"{len(mine)} peaks of Z={z} for {count} atoms")
            keep.extend(mine[np.argsort(-heights[mine], kind="stable")[:count]])
        return np.sort(np.array(keep, dtype=np.int64))


__all__ = ["SparseGrid", "Voxel", "VoxelConfig", "VoxelError", "VoxelImage"]
