"""save / load: safetensors plus JSON, bit-identical round trips, and clear errors for every kind of damage."""

import json
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from sklearn.exceptions import NotFittedError

from sklearn_sae import SparseAutoencoderTransformer, _persistence
from sklearn_sae._persistence import CONFIG_NAME, FORMAT_VERSION, WEIGHTS_NAME

N_FEATURES, N_LATENTS = 8, 16


def _sae(**params):
    defaults = dict(n_latents=N_LATENTS, k=3, max_epochs=2, batch_size=32, device="cpu", random_state=0)
    return SparseAutoencoderTransformer(**{**defaults, **params})


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).normal(size=(120, N_FEATURES)).astype(np.float32) + 0.3


@pytest.fixture(scope="module")
def saved_dir(X, tmp_path_factory):
    """A Gumbel model with AuxK, saved once for the tests that only read or damage a copy."""
    directory = tmp_path_factory.mktemp("saved") / "model"
    _sae(activation="gumbel_topk", aux_k=2, tied=False).fit(X).save(directory)
    return directory


@pytest.fixture
def copy_of_saved(saved_dir, tmp_path):
    return Path(shutil.copytree(saved_dir, tmp_path / "model"))


def _read_config(directory):
    return json.loads((directory / CONFIG_NAME).read_text())


def _write_config(directory, config):
    (directory / CONFIG_NAME).write_text(json.dumps(config))


def _rewrite_weights(directory, change):
    """Apply ``change`` to the saved tensors and record the new checksum, as a consistent but wrong save would."""
    tensors = load_file(directory / WEIGHTS_NAME)
    change(tensors)
    save_file(tensors, directory / WEIGHTS_NAME)
    config = _read_config(directory)
    config["weights_sha256"] = _persistence._sha256(directory / WEIGHTS_NAME)
    _write_config(directory, config)


def _assert_same_fitted_model(loaded, original, X):
    first, second = loaded.transform(X), original.transform(X)
    if sp.issparse(second):
        assert sp.issparse(first)
        np.testing.assert_array_equal(first.indptr, second.indptr)
        np.testing.assert_array_equal(first.indices, second.indices)
        first, second = first.data, second.data
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(loaded.reconstruct(X), original.reconstruct(X))
    np.testing.assert_array_equal(loaded.components_, original.components_)
    assert loaded.get_params() == original.get_params()
    assert list(loaded.history_) == list(original.history_)
    assert loaded.n_iter_ == original.n_iter_ and loaded.n_latents_ == original.n_latents_
    assert loaded.n_features_in_ == original.n_features_in_
    np.testing.assert_array_equal(loaded.get_feature_names_out(), original.get_feature_names_out())
    for name, tensor in original.net_.module_.state_dict().items():
        assert torch.equal(loaded.net_.module_.state_dict()[name], tensor), name


@pytest.mark.parametrize("sparse_output", [False, True])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("activation", ["relu", "topk", "gumbel_topk"])
def test_loaded_model_is_bit_identical(X, tmp_path, activation, tied, sparse_output):
    frame = pd.DataFrame(X, columns=[f"dim{i}" for i in range(N_FEATURES)])
    aux_k = None if activation == "relu" else 2
    sae = _sae(activation=activation, tied=tied, sparse_output=sparse_output, aux_k=aux_k, anneal_steps=0.5)
    sae.fit(frame)
    sae.save(tmp_path / "model")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    _assert_same_fitted_model(loaded, sae, frame)
    np.testing.assert_array_equal(loaded.feature_names_in_, sae.feature_names_in_)
    if activation == "gumbel_topk":  # the resolved schedule and its position, not the fraction, come back
        saved, restored = sae.net_.module_.activation, loaded.net_.module_.activation
        assert restored.anneal_steps == saved.anneal_steps and int(restored.n_steps) == int(saved.n_steps) > 0


# 120 rows, 12 held out: a top-k dictionary sized to 108 x k=3 // 128 = 2, raised to k = 3 latents; relu keeps
# 4 x n_features.
@pytest.mark.parametrize("activation, n_latents", [("topk", 3), ("gumbel_topk", 3), ("relu", 4 * N_FEATURES)])
def test_model_fitted_with_n_latents_none_loads_with_its_fitted_size(X, tmp_path, activation, n_latents):
    # The file does not hold the training rows that sized the dictionary: load must take the saved n_latents_,
    # not recompute 4 x n_features from the width alone.
    sae = _sae(n_latents=None, activation=activation, anneal_steps=0.5).fit(X)
    assert sae.n_latents_ == n_latents
    sae.save(tmp_path / "model")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    assert loaded.get_params()["n_latents"] is None  # the parameter itself comes back as given
    _assert_same_fitted_model(loaded, sae, X)
    assert loaded.fit(X).n_latents_ == n_latents  # a refit sizes it from the rows again


def test_model_fitted_with_n_latents_none_and_a_saved_size_below_k_is_refused(X, tmp_path):
    directory = tmp_path / "model"
    _sae(n_latents=None).fit(X).save(directory)
    config = _read_config(directory)
    config["fitted"]["n_latents_"] = 2  # the saved size is still checked against k=3
    _write_config(directory, config)
    with pytest.raises(ValueError, match="field 'params' is not valid: k=3 is larger than n_latents=2"):
        SparseAutoencoderTransformer.load(directory)


def test_saved_directory_holds_safetensors_and_json(saved_dir):
    assert sorted(path.name for path in saved_dir.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    config = _read_config(saved_dir)
    assert config["format"] == "sklearn_sae" and config["format_version"] == FORMAT_VERSION == 1
    assert config["estimator"] == "SparseAutoencoderTransformer"
    assert config["params"]["random_state"] == 0 and config["params"]["activation"] == "gumbel_topk"
    assert config["fitted"] == {"n_features_in_": N_FEATURES, "n_latents_": N_LATENTS, "n_iter_": 2,
                                # lr="auto": a soft start's scale, lowered for batches of 32
                                "lr_": pytest.approx(0.0423 * 5 / 3 * (32 / 256) ** 0.5, rel=1e-2)}
    assert isinstance(config["anneal_steps"], int) and config["sklearn_sae_version"]
    assert set(load_file(saved_dir / WEIGHTS_NAME)) == {
        "pre_bias",
        "b_lat",
        "W_enc",
        "W_dec",
        "rows_since_fired",
        "activation.n_steps",
    }


def test_load_never_unpickles(saved_dir, X, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load must not unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert SparseAutoencoderTransformer.load(saved_dir).transform(X).shape == (len(X), N_LATENTS)


def test_loaded_model_pickles_and_refits(saved_dir, X):
    loaded = SparseAutoencoderTransformer.load(saved_dir)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(loaded)).transform(X), loaded.transform(X))
    assert loaded.fit(X).n_iter_ == 2


def test_save_of_an_unfitted_model_raises(tmp_path):
    with pytest.raises(NotFittedError):
        _sae().save(tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_model_saved_for_a_gpu_loads_on_a_cpu_only_machine(X, tmp_path, monkeypatch):
    sae = _sae().fit(X)
    sae.set_params(device="cuda").save(tmp_path / "model")  # as a GPU fit would record it
    assert _read_config(tmp_path / "model")["params"]["device"] == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    assert loaded.device == "cpu" and loaded.net_.module_.W_enc.device.type == "cpu"
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))
    on_any = SparseAutoencoderTransformer.load(tmp_path / "model", device="auto")
    assert on_any.device == "auto" and on_any.net_.module_.W_enc.device.type == "cpu"
    with pytest.raises(ValueError, match="no CUDA GPU"):
        SparseAutoencoderTransformer.load(tmp_path / "model", device="cuda")
    with pytest.raises(TypeError, match="device must be a string"):
        SparseAutoencoderTransformer.load(tmp_path / "model", device=torch.device("cpu"))


def test_random_state_instance_is_saved_as_none_with_a_warning(X, tmp_path):
    sae = _sae(random_state=np.random.RandomState(0)).fit(X)
    with pytest.warns(UserWarning, match="random_state=None"):
        sae.save(tmp_path / "model")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    assert loaded.random_state is None
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))


def test_numpy_values_and_non_finite_history_are_written_as_strict_json(X, tmp_path):
    sae = _sae(k=np.int64(3), lr=np.float32(0.01)).fit(X)
    sae.history_.record("note", np.float64(np.nan))
    sae.history_.record("flag", np.bool_(True))
    sae.save(tmp_path / "model")
    text = (tmp_path / "model" / CONFIG_NAME).read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    assert loaded.history_[-1, "note"] is None and loaded.history_[-1, "flag"] is True
    assert type(loaded.k) is int and loaded.k == 3


def test_save_replaces_an_earlier_model_but_not_other_content(X, tmp_path):
    directory = tmp_path / "model"
    _sae(activation="relu").fit(X).save(directory)
    topk = _sae().fit(X).save(directory)
    np.testing.assert_array_equal(SparseAutoencoderTransformer.load(directory).transform(X), topk.transform(X))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="refusing to replace .*results: it holds notes.txt"):
        topk.save(tmp_path / "results")
    assert (tmp_path / "results" / "notes.txt").read_text() == "mine"


def test_interrupted_save_leaves_the_previous_model_intact(X, tmp_path, monkeypatch):
    directory = tmp_path / "model"
    good = _sae().fit(X).save(directory)
    before = {path.name: path.read_bytes() for path in directory.iterdir()}

    def write_half_then_fail(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 100)
        raise OSError("disk full")

    monkeypatch.setattr(_persistence, "save_file", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        _sae(activation="relu").fit(X).save(directory)
    assert {path.name: path.read_bytes() for path in directory.iterdir()} == before
    assert [path.name for path in tmp_path.iterdir()] == ["model"]  # no temporary entry left beside it
    np.testing.assert_array_equal(SparseAutoencoderTransformer.load(directory).transform(X), good.transform(X))


def _set(path, value):
    def change(config):
        *parents, last = path.split(".")
        target = config
        for key in parents:
            target = target[key]
        target[last] = value

    return change


def _delete(path):
    def change(config):
        *parents, last = path.split(".")
        target = config
        for key in parents:
            target = target[key]
        del target[last]

    return change


CONFIG_DAMAGE = {
    "export record": (_set("format", "sparsify"), "field 'format' is 'sparsify'"),
    "newer format": (_set("format_version", FORMAT_VERSION + 1), "format_version 2.*newer"),
    "format not a number": (_set("format_version", "1"), "format_version"),
    "other estimator": (_set("estimator", "PCA"), "'estimator'"),
    "n_latents_ disagrees": (_set("fitted.n_latents_", N_LATENTS + 1), "fitted.n_latents_"),
    "n_features_in_ disagrees": (_set("fitted.n_features_in_", N_FEATURES + 1), "shape.*fitted.n_features_in_"),
    "n_iter_ missing": (_delete("fitted.n_iter_"), "fitted.n_iter_"),
    "feature names of the wrong length": (_set("fitted.feature_names_in_", ["a"]), "fitted.feature_names_in_"),
    "params missing": (_delete("params"), "'params'"),
    "parameter missing": (_delete("params.k"), r"params.*missing: \['k'\]"),
    "parameter unknown": (_set("params.colour", "red"), r"params.*unknown: \['colour'\]"),
    "parameter invalid": (_set("params.activation", "softmax"), "params.*activation"),
    "k above n_latents": (_set("params.k", N_LATENTS + 1), "params.*k=17"),
    "tied flipped": (_set("params.tied", True), r"unexpected \['W_dec'\].*params.tied"),
    "anneal_steps not an int": (_set("anneal_steps", 0.5), "'anneal_steps'"),
    "checksum missing": (_delete("weights_sha256"), "weights_sha256"),
    "history not a list": (_set("history", {}), "'history'"),
    "history entry not an object": (_set("history", [1]), r"history\[0\]"),
}


@pytest.mark.parametrize("damage", CONFIG_DAMAGE, ids=list(CONFIG_DAMAGE))
def test_config_that_disagrees_or_is_damaged_raises_value_error(copy_of_saved, damage):
    change, message = CONFIG_DAMAGE[damage]
    config = _read_config(copy_of_saved)
    change(config)
    _write_config(copy_of_saved, config)
    with pytest.raises(ValueError, match=message) as error:
        SparseAutoencoderTransformer.load(copy_of_saved)
    assert CONFIG_NAME in str(error.value)


WEIGHTS_DAMAGE = {
    "tensor shape": (lambda t: t.update(b_lat=torch.zeros(N_LATENTS + 1)), "'b_lat' has shape"),
    "tensor dtype": (
        lambda t: t.update(W_enc=t["W_enc"].double()),
        "'W_enc' has dtype torch.float64; expected torch.float32",
    ),
    "missing tensor": (lambda t: t.pop("pre_bias"), r"missing \['pre_bias'\]"),
    "extra tensor": (lambda t: t.update(extra=torch.zeros(1)), r"unexpected \['extra'\]"),
}


@pytest.mark.parametrize("damage", WEIGHTS_DAMAGE, ids=list(WEIGHTS_DAMAGE))
def test_weights_that_disagree_with_the_config_raise_value_error(copy_of_saved, damage):
    change, message = WEIGHTS_DAMAGE[damage]
    _rewrite_weights(copy_of_saved, change)
    with pytest.raises(ValueError, match=message) as error:
        SparseAutoencoderTransformer.load(copy_of_saved)
    assert WEIGHTS_NAME in str(error.value)


def test_damaged_files_raise_value_error_naming_them(copy_of_saved):
    weights = copy_of_saved / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ValueError, match=f"{WEIGHTS_NAME} does not match the checksum.*weights_sha256"):
        SparseAutoencoderTransformer.load(copy_of_saved)
    config = _read_config(copy_of_saved)
    weights.write_bytes(b"\xff" * 64)  # not safetensors at all, with a checksum that matches it
    config["weights_sha256"] = _persistence._sha256(weights)
    _write_config(copy_of_saved, config)
    with pytest.raises(ValueError, match=f"{WEIGHTS_NAME} is not a readable safetensors file"):
        SparseAutoencoderTransformer.load(copy_of_saved)
    text = (copy_of_saved / CONFIG_NAME).read_text()
    (copy_of_saved / CONFIG_NAME).write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=f"{CONFIG_NAME} is not valid JSON"):
        SparseAutoencoderTransformer.load(copy_of_saved)
    (copy_of_saved / CONFIG_NAME).write_text("[]")
    with pytest.raises(ValueError, match=f"{CONFIG_NAME} must hold a JSON object"):
        SparseAutoencoderTransformer.load(copy_of_saved)


def test_missing_files_raise_value_error_naming_what_was_expected(copy_of_saved, tmp_path):
    (copy_of_saved / WEIGHTS_NAME).unlink()
    with pytest.raises(ValueError, match=f"{WEIGHTS_NAME} is missing"):
        SparseAutoencoderTransformer.load(copy_of_saved)
    (copy_of_saved / CONFIG_NAME).unlink()
    with pytest.raises(ValueError, match=f"has no {CONFIG_NAME}.*expected {CONFIG_NAME} and {WEIGHTS_NAME}"):
        SparseAutoencoderTransformer.load(copy_of_saved)
    with pytest.raises(ValueError, match="is not a directory"):
        SparseAutoencoderTransformer.load(tmp_path / "nowhere")


def _json_key_paths(value, prefix=()):
    """Every path of keys in a JSON document, parents before children."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _json_key_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_key_paths(item, (*prefix, index))


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    damage=st.sampled_from(["truncate", "flip", "delete key"]),
    name=st.sampled_from([CONFIG_NAME, WEIGHTS_NAME]),
)
def test_randomly_damaged_save_raises_value_error_or_loads_a_working_model(saved_dir, X, data, damage, name):
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(shutil.copytree(saved_dir, Path(scratch) / "model"))
        path = directory / name
        content = bytearray(path.read_bytes())
        if damage == "delete key":
            config = _read_config(directory)
            key_path = data.draw(st.sampled_from(list(_json_key_paths(config))), label="key path")
            target = config
            for key in key_path[:-1]:
                target = target[key]
            del target[key_path[-1]]
            _write_config(directory, config)
            name = CONFIG_NAME
        elif damage == "truncate":
            path.write_bytes(content[: data.draw(st.integers(0, len(content) - 1), label="length")])
        else:
            position = data.draw(st.integers(0, len(content) - 1), label="position")
            content[position] ^= data.draw(st.integers(1, 255), label="xor")
            path.write_bytes(content)
        try:
            loaded = SparseAutoencoderTransformer.load(directory)
        except ValueError as error:
            assert name in str(error) or CONFIG_NAME in str(error)
            return
        # The checksum catches every change to the weights; harmless JSON edits (a history value) may load.
        assert name == CONFIG_NAME, "damaged weights loaded without an error"
        assert loaded.transform(X).shape == (len(X), loaded.n_latents_)


def test_an_export_record_is_not_a_saved_model(saved_dir, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / CONFIG_NAME).write_text(json.dumps({"version": 1, "format": "saelens"}))
    assert _persistence.is_saved_model(saved_dir)
    assert not _persistence.is_saved_model(export) and not _persistence.is_saved_model(tmp_path / "nowhere")
    (export / CONFIG_NAME).write_text('{"format": "sklearn_sae", "forma')  # damaged: loading must say so
    assert _persistence.is_saved_model(export)


def test_values_without_a_json_form_are_refused_by_name(X, tmp_path):
    assert _persistence._to_json({"path": Path("runs") / "a"}, "params") == {"path": str(Path("runs") / "a")}
    sae = _sae().fit(X)
    sae.history_.record("callback_state", object())
    with pytest.raises(TypeError, match=r"history\[1\].callback_state has type object"):
        sae.save(tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_the_resolved_learning_rate_is_saved_and_loaded(X, tmp_path):
    sae = _sae(lr="auto").fit(X)
    assert 0 < sae.lr_ < 1 and sae.lr_ == sae.net_.lr
    sae.save(tmp_path / "model")
    assert _read_config(tmp_path / "model")["fitted"]["lr_"] == sae.lr_
    assert SparseAutoencoderTransformer.load(tmp_path / "model").lr_ == sae.lr_


def test_a_file_without_the_learning_rate_loads_with_lr_none(copy_of_saved):
    config = _read_config(copy_of_saved)
    del config["fitted"]["lr_"]  # as written before the field existed
    _write_config(copy_of_saved, config)
    assert SparseAutoencoderTransformer.load(copy_of_saved).lr_ is None


@pytest.mark.parametrize("value", [0, -1e-3, "1e-3", True])
def test_a_damaged_learning_rate_is_refused(copy_of_saved, value):
    config = _read_config(copy_of_saved)
    config["fitted"]["lr_"] = value
    _write_config(copy_of_saved, config)
    with pytest.raises(ValueError, match="fitted.lr_"):
        SparseAutoencoderTransformer.load(copy_of_saved)
