"""GAE, returns and sequence splitting against numbers worked out by hand."""

import numpy as np
import pytest
import torch

from evopop.agents.buffer import (
    RolloutBuffer,
    compute_gae,
    minibatches,
    next_values,
    split_sequences,
)

GAMMA, LAM = 0.5, 0.5


def _buffer(terminated, truncated, bootstrap, last_values) -> RolloutBuffer:
    """Three steps on three envs with rewards 1, 2, 3 and values 0.5, 1.0, 1.5 in every env."""
    buf = RolloutBuffer.allocate(3, 3, 1, 1, (0, 1, 3, 1))
    buf.rewards[:] = np.array([1.0, 2.0, 3.0])[:, None]
    buf.values[:] = np.array([0.5, 1.0, 1.5])[:, None]
    buf.terminated[:] = np.array(terminated, bool)
    buf.truncated[:] = np.array(truncated, bool)
    buf.bootstrap_values[:] = np.array(bootstrap, np.float32)
    buf.last_values[:] = last_values
    return buf


def _gae(buf):
    dones = buf.terminated | buf.truncated
    return compute_gae(buf.rewards, buf.values, next_values(buf), dones, GAMMA, LAM)


def test_gae_by_hand_for_termination_truncation_and_mid_episode_end():
    # env 0: terminated after step 1; env 1: truncated after step 1 with V(final obs) = 4;
    # env 2: no episode end, the rollout stops mid-episode and bootstraps with last value 2.
    buf = _buffer(
        terminated=[[0, 0, 0], [1, 0, 0], [0, 0, 0]],
        truncated=[[0, 0, 0], [0, 1, 0], [0, 0, 0]],
        bootstrap=[[0, 0, 0], [0, 4.0, 0], [0, 0, 0]],
        last_values=2.0,
    )
    adv, ret = _gae(buf)
    # env 0: deltas 1.0, 1.0 (next value 0), 2.5; adv_0 = 1 + 0.25 * 1 = 1.25
    # env 1: deltas 1.0, 2 + 0.5*4 - 1 = 3.0, 2.5; adv_0 = 1 + 0.25 * 3 = 1.75
    # env 2: deltas 1.0, 1.75, 2.5; adv_1 = 1.75 + 0.25*2.5 = 2.375; adv_0 = 1 + 0.25*2.375
    expected_adv = np.array([[1.25, 1.75, 1.59375], [1.0, 3.0, 2.375], [2.5, 2.5, 2.5]])
    np.testing.assert_allclose(adv, expected_adv, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ret, expected_adv + buf.values, atol=1e-6)


def test_termination_wins_over_truncation_and_last_step_bootstraps():
    buf = _buffer(
        terminated=[[0, 0, 0], [0, 0, 0], [1, 0, 0]],
        truncated=[[0, 0, 0], [0, 0, 0], [1, 1, 0]],
        bootstrap=[[0, 0, 0], [0, 0, 0], [7.0, 7.0, 0]],
        last_values=[9.0, 9.0, 2.0],
    )
    nxt = next_values(buf)
    np.testing.assert_allclose(nxt[2], [0.0, 7.0, 2.0])
    np.testing.assert_allclose(nxt[:2, 0], [1.0, 1.5])


def test_split_sequences_cuts_at_episode_starts_and_max_len():
    starts = np.zeros((6, 2), bool)
    starts[3, 0] = True
    seqs = split_sequences(starts, max_seq_len=2)
    # env-major flat index n*T + t: env 0 is 0..5, env 1 is 6..11
    columns = [list(seqs.index[seqs.mask[:, s], s]) for s in range(seqs.count)]
    assert columns == [[0, 1], [2], [3, 4], [5], [6, 7], [8, 9], [10, 11]]
    assert seqs.lengths.tolist() == [2, 1, 2, 1, 2, 2, 2]


def test_split_sequences_rollout_shorter_than_max_len():
    seqs = split_sequences(np.zeros((3, 1), bool), max_seq_len=8)
    assert seqs.index.shape == (3, 1)
    assert seqs.mask.all()


@pytest.mark.parametrize("batch_size", [1, 5, 16, 1000])
def test_minibatches_cover_every_sequence_once_with_enough_transitions(batch_size):
    rng = np.random.default_rng(0)
    starts = rng.random((50, 4)) < 0.1
    seqs = split_sequences(starts, max_seq_len=7)
    groups = minibatches(seqs, batch_size, np.random.default_rng(1))
    every = np.sort(np.concatenate(groups))
    np.testing.assert_array_equal(every, np.arange(seqs.count))
    sizes = [int(seqs.lengths[g].sum()) for g in groups]
    assert all(s >= batch_size for s in sizes[:-1])
    assert all(s < batch_size + 7 for s in sizes[:-1])
    assert sizes[-1] >= min(batch_size // 2, 200) and sizes[-1] < 2 * batch_size + 7
    assert sum(sizes) == 200


def test_buffer_allocate_shapes():
    buf = RolloutBuffer.allocate(5, 3, 4, 2, (2, 1, 3, 8))
    assert buf.obs.shape == (5, 3, 4) and buf.actions.shape == (5, 3, 2)
    assert buf.states.shape == (5, 2, 1, 3, 8) and buf.states.dtype == torch.float32
