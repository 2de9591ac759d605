"""Image quality metrics as pure numpy functions: PSNR and SSIM on intensity images in [0, 1].

SSIM follows Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5, ``K1 = 0.01``,
``K2 = 0.03``, data range 1, statistics over 'valid' window positions only (no padding), mean of
the SSIM map. Computed in float64 with a separable filter.
"""

from __future__ import annotations

import numpy as np

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(image: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if image.shape != reference.shape or image.ndim != 2:
        raise ValueError(f"metrics need two (H, W) images of the same shape, got {image.shape} and {reference.shape}")
    return image, reference


def psnr(image: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images)."""
    image, reference = _check_pair(image, reference)
    mse = float(np.mean((image - reference) ** 2))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def gaussian_kernel_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _filter_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D image with ``outer(kernel, kernel)``."""
    size = len(kernel)
    rows = np.lib.stride_tricks.sliding_window_view(image, size, axis=1) @ kernel
    return np.lib.stride_tricks.sliding_window_view(rows, size, axis=0) @ kernel


def ssim(image: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity (Gaussian 11x11, sigma 1.5, valid positions)."""
    image, reference = _check_pair(image, reference)
    if min(image.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {image.shape}")
    kernel = gaussian_kernel_1d()
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x = _filter_valid(image, kernel)
    mu_y = _filter_valid(reference, kernel)
    sxx = _filter_valid(image * image, kernel) - mu_x**2
    syy = _filter_valid(reference * reference, kernel) - mu_y**2
    sxy = _filter_valid(image * reference, kernel) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


__all__ = ["psnr", "ssim", "gaussian_kernel_1d"]
