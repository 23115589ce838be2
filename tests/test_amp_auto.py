"""amp="auto": bfloat16 where the device multiplies it natively, float32 elsewhere, recorded on the model as amp_."""

import json
import pickle
import sys

import numpy as np
import pytest
import torch

from sklearn_sae import SparseAutoencoderTransformer, _precision
from sklearn_sae._persistence import CONFIG_NAME
from sklearn_sae._precision import AMP_CPU_FLAGS, REPORTED_CPU_FLAGS, cpu_flags, resolve_amp

X = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
NO_BFLOAT16 = dict.fromkeys(REPORTED_CPU_FLAGS, False) | {"avx2": True, "avx512f": True}


def _with_flags(monkeypatch, **flags):
    monkeypatch.setattr(_precision, "cpu_flags", lambda: {**NO_BFLOAT16, **flags})


def _fit(**params):
    defaults = dict(n_latents=32, k=4, max_epochs=2, batch_size=64, random_state=0, device="cpu")
    return SparseAutoencoderTransformer(**{**defaults, **params}).fit(X)


def test_auto_is_float32_on_a_cpu_without_amx_or_avx512_bf16(monkeypatch):
    _with_flags(monkeypatch)
    sae = _fit(amp="auto")
    assert sae.amp_ is False and sae.get_params()["amp"] == "auto"
    fp32 = _fit(amp=False)
    assert sae.history_[-1, "train_loss"] == fp32.history_[-1, "train_loss"]
    np.testing.assert_array_equal(sae.transform(X), fp32.transform(X))


@pytest.mark.parametrize("flag", AMP_CPU_FLAGS)
def test_auto_is_bfloat16_on_a_cpu_with_native_bfloat16_products(monkeypatch, flag):
    _with_flags(monkeypatch, **{flag: True})
    sae = _fit(amp="auto")
    assert sae.amp_ is True
    bf16, fp32 = _fit(amp=True), _fit(amp=False)
    assert sae.history_[-1, "train_loss"] == bf16.history_[-1, "train_loss"] != fp32.history_[-1, "train_loss"]
    np.testing.assert_array_equal(sae.transform(X), bf16.transform(X))


@pytest.mark.parametrize("amp", [True, False])
def test_a_boolean_amp_is_taken_as_it_is(monkeypatch, amp):
    _with_flags(monkeypatch, amx_bf16=not amp, avx512_bf16=not amp)
    assert _fit(amp=amp).amp_ is amp


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_auto_on_cuda_follows_the_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert resolve_amp("auto", "cuda") is expected
    assert resolve_amp("auto", "cuda:0") is expected
    assert resolve_amp(False, "cuda") is False


def test_auto_on_cuda_without_a_gpu_says_what_to_use(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="PyTorch sees no CUDA GPU"):
        resolve_amp("auto", "cuda")


def test_amp_must_be_a_boolean_or_auto():
    with pytest.raises(ValueError, match="'amp' parameter"):
        _fit(amp="bf16")


def test_amp_is_saved_and_loaded_as_fitted_not_as_resolved_again(monkeypatch, tmp_path):
    _with_flags(monkeypatch, amx_bf16=True)
    sae = _fit(amp="auto")
    codes = sae.transform(X)
    sae.save(tmp_path / "model")
    assert json.loads((tmp_path / "model" / CONFIG_NAME).read_text())["fitted"]["amp_"] is True
    _with_flags(monkeypatch)  # loaded where "auto" would choose float32: it keeps the precision it was fitted in
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    assert loaded.amp_ is True and loaded.get_params()["amp"] == "auto"
    np.testing.assert_array_equal(loaded.transform(X), codes)
    unpickled = pickle.loads(pickle.dumps(sae))
    assert unpickled.amp_ is True
    np.testing.assert_array_equal(unpickled.transform(X), codes)


def test_a_file_saved_before_amp_was_recorded_loads_its_amp_parameter(tmp_path):
    _fit(amp=True).save(tmp_path / "model")
    config_path = tmp_path / "model" / CONFIG_NAME
    config = json.loads(config_path.read_text())
    del config["fitted"]["amp_"]
    config_path.write_text(json.dumps(config))
    assert SparseAutoencoderTransformer.load(tmp_path / "model").amp_ is True


def test_a_saved_amp_that_is_not_a_boolean_is_refused(tmp_path):
    _fit().save(tmp_path / "model")
    config_path = tmp_path / "model" / CONFIG_NAME
    config = json.loads(config_path.read_text())
    config["fitted"]["amp_"] = "yes"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="'fitted.amp_' is 'yes'; it must be true or false"):
        SparseAutoencoderTransformer.load(tmp_path / "model")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_cpu_flags_name_the_features_as_proc_cpuinfo_does(monkeypatch):
    flags = cpu_flags()
    assert set(flags) == set(REPORTED_CPU_FLAGS) and all(isinstance(value, bool) for value in flags.values())
    if hasattr(torch.cpu, "get_capabilities"):  # torch's detection and the fallback must agree, name for name
        cpu_flags.cache_clear()
        monkeypatch.delattr(torch.cpu, "get_capabilities")
        try:
            assert cpu_flags() == flags
        finally:
            cpu_flags.cache_clear()
