"""What a data-parallel fit synchronises between its steps: BatchTopK's running threshold, and nothing for JumpReLU,
whose thresholds come from a parameter that the averaged gradients keep equal."""

import json
import pickle

import pytest
import torch

pytest.importorskip("accelerate")  # the launcher imports it in its own interpreter

from sklearn_sae import _distributed  # noqa: E402
from test_distributed import _data, _estimator, _launch, fresh_accelerate_state  # noqa: E402, F401


def _count_threshold_all_reduces(folder):
    """Run in each launched process: fit each learned-threshold activation, counting SyncThreshold's all-reduces."""
    counts = {}
    all_reduce, on_batch_end = torch.distributed.all_reduce, _distributed.SyncThreshold.on_batch_end

    def counting_on_batch_end(self, net, **kwargs):
        def counting_all_reduce(*args, **all_reduce_kwargs):
            counts[activation] += 1
            return all_reduce(*args, **all_reduce_kwargs)

        torch.distributed.all_reduce = counting_all_reduce
        try:
            on_batch_end(self, net, **kwargs)
        finally:
            torch.distributed.all_reduce = all_reduce

    _distributed.SyncThreshold.on_batch_end = counting_on_batch_end
    states = {}
    try:
        for activation in ("jumprelu", "batchtopk"):
            counts[activation] = 0
            states[activation] = _estimator(activation=activation, max_epochs=1).fit(_data()).net_.module_.state_dict()
    finally:
        _distributed.SyncThreshold.on_batch_end = on_batch_end
    rank = torch.distributed.get_rank()
    (folder / f"rank{rank}.json").write_text(json.dumps(counts))
    (folder / f"rank{rank}.pkl").write_bytes(pickle.dumps(states))


def test_only_batchtopk_threshold_is_all_reduced(tmp_path):
    _launch(_count_threshold_all_reduces, tmp_path)
    for rank in range(2):
        counts = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert counts["jumprelu"] == 0
        assert counts["batchtopk"] == 8  # one per training step: 512 rows in batches of 32, 8 per process
    states = [pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes()) for rank in range(2)]
    for activation in ("jumprelu", "batchtopk"):
        for name, tensor in states[0][activation].items():  # JumpReLU's thresholds stay equal without syncing
            assert torch.equal(tensor, states[1][activation][name]), (activation, name)
