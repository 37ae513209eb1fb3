"""envpool's C++ batch (`vectorization: fast`): the same dynamics as Gymnasium, step for step,
SAME_STEP autoreset, the POMDP wrappers' exact draws, and `auto` settled once."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from evopop.envs import EnvError, coverage, make_vec_env
from evopop.envs.coverage import FAST_BASE_IDS
from evopop.envs.fast import FastVectorEnv
from evopop.envs.spec import EnvSpec, Vectorization
from evopop.wrappers.pomdp import FLICKER_SEED_TAG, NOISY_SEED_TAG

pytest.importorskip("envpool")


def _state_from_obs(env_id: str, obs: np.ndarray) -> np.ndarray:
    """The Gymnasium state that a (fully observed) observation encodes."""
    o = obs.astype(np.float64)
    if env_id == "Pendulum-v1":
        return np.array([np.arctan2(o[1], o[0]), o[2]])
    if env_id == "Acrobot-v1":
        return np.array([np.arctan2(o[1], o[0]), np.arctan2(o[3], o[2]), o[4], o[5]])
    return o


def _actions(space: gym.Space, rng: np.random.Generator, n: int) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, size=n)
    return rng.uniform(-1.5 * space.high, 1.5 * space.high, size=(n, *space.shape))  # clipped


@pytest.mark.parametrize("env_id", sorted(FAST_BASE_IDS))
def test_fast_dynamics_match_gymnasium_step_for_step(env_id: str) -> None:
    envs = make_vec_env(EnvSpec(id=env_id, vectorization="fast"), 3, seed=7)
    reference = gym.make(env_id).unwrapped
    reference.reset(seed=0)
    rng = np.random.default_rng(0)
    obs, _ = envs.reset(seed=7)
    compared = 0
    for _ in range(150):
        actions = _actions(envs.single_action_space, rng, 3)
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        for i in range(3):
            reference.state = _state_from_obs(env_id, obs[i])
            reference.steps_beyond_terminated = None  # CartPole bookkeeping, not state
            want_obs, want_reward, want_term, *_ = reference.step(actions[i])
            got = infos["final_obs"][i] if terminated[i] or truncated[i] else next_obs[i]
            np.testing.assert_allclose(got, want_obs, rtol=1e-4, atol=1e-4)
            assert rewards[i] == pytest.approx(want_reward, rel=1e-4, abs=1e-4)
            assert terminated[i] == want_term
            compared += 1
        obs = next_obs
    assert compared == 450
    envs.close()


def test_done_steps_restart_at_once_with_the_final_obs_in_infos() -> None:
    envs = make_vec_env(EnvSpec(id="CartPoleNoVel-v1", vectorization="fast"), 2, seed=0)
    assert envs.metadata["autoreset_mode"] is gym.vector.AutoresetMode.SAME_STEP
    for _ in range(100):
        obs, _, terminated, truncated, infos = envs.step(np.zeros(2, np.int64))
        if np.any(terminated):
            break
    done = terminated | truncated
    np.testing.assert_array_equal(infos["_final_obs"], done)
    for i in np.flatnonzero(done):
        assert abs(infos["final_obs"][i][2]) > 0.2  # the pole fell
        assert np.all(np.abs(obs[i]) <= 0.05)  # already the next episode's first observation
        assert np.all(obs[i, [1, 3]] == 0) and np.all(infos["final_obs"][i][[1, 3]] == 0)
    _, rewards, *_ = envs.step(np.zeros(2, np.int64))
    np.testing.assert_array_equal(rewards, [1.0, 1.0])  # no junk step after an episode end
    envs.close()


def _observations(spec: EnvSpec, seed: int, steps: int = 80) -> list[np.ndarray]:
    """Per copy, every observation in order (reset, steps; a done step's final obs first)."""
    envs = make_vec_env(spec, 3, seed=seed)
    obs, _ = envs.reset(seed=seed)
    rows: list[list[np.ndarray]] = [[o] for o in obs]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        obs, _, terminated, truncated, infos = envs.step(
            _actions(envs.single_action_space, rng, 3))
        for i in range(3):
            if terminated[i] or truncated[i]:
                rows[i].append(infos["final_obs"][i])
            rows[i].append(obs[i])
    envs.close()
    return [np.stack(r) for r in rows]


@pytest.mark.parametrize(("wrapper", "tag"), [({"noisy": {"sigma": 0.3}}, NOISY_SEED_TAG),
                                              ({"flicker": {"p": 0.4}}, FLICKER_SEED_TAG)])
def test_batched_wrappers_draw_what_per_env_wrappers_draw(wrapper: dict, tag: int) -> None:
    clean = _observations(EnvSpec(id="CartPole-v1", vectorization="fast"), seed=3)
    wrapped = _observations(EnvSpec(id="CartPole-v1", vectorization="fast",
                                    wrappers=[wrapper]), seed=3)
    for i in range(3):
        rng = np.random.default_rng(np.random.SeedSequence([3 + i, tag]))
        # a seeded reset after make_vec_env's: the stream restarts from seed + i
        for row_clean, row_wrapped in zip(clean[i], wrapped[i], strict=True):
            if tag == NOISY_SEED_TAG:
                want = (row_clean + rng.normal(0.0, 0.3, size=4)).astype(np.float32)
            else:
                want = np.zeros(4, np.float32) if rng.random() < 0.4 else row_clean
            np.testing.assert_array_equal(row_wrapped, want)
    assert len(clean[0]) > 81  # the comparison covers episode ends


def test_same_seed_same_observations_other_seed_others() -> None:
    spec = EnvSpec(id="PendulumNoVel-v1", vectorization="fast",
                   wrappers=[{"noisy": {"sigma": 0.1}}])
    first, again, other = (_observations(spec, s) for s in (5, 5, 6))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    assert np.all(first[0][:, 2] != 0)  # the mask comes first, noise after it (as NoVel + noisy)


def test_auto_settles_once_where_envpool_covers_the_env(monkeypatch) -> None:
    assert EnvSpec(id="PendulumNoVel-v1").vectorization is Vectorization.FAST
    assert EnvSpec(id="CartPole-v1", vectorization="auto").vectorization is Vectorization.FAST
    assert EnvSpec(id="evopop/TMaze-v0").vectorization is Vectorization.SYNC
    assert EnvSpec(id="CartPoleNoVel-v1",
                   kwargs={"sutton_barto_reward": True}).vectorization is Vectorization.SYNC
    saved = EnvSpec(id="PendulumNoVel-v1").model_dump(mode="json")
    assert saved["vectorization"] == "fast"  # what a run saves, so resume never re-decides
    monkeypatch.setattr(coverage, "envpool_installed", lambda: False)
    assert EnvSpec(id="PendulumNoVel-v1").vectorization is Vectorization.SYNC
    with pytest.raises(ValueError, match="envpool is not installed"):
        EnvSpec.model_validate(saved)


def test_explicit_fast_on_an_uncovered_env_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="envpool does not cover 'evopop/TMaze-v0'"):
        EnvSpec(id="evopop/TMaze-v0", vectorization="fast")
    with pytest.raises(EnvError, match="cannot apply wrapper"):
        make_vec_env(EnvSpec(id="CartPole-v1", vectorization="fast",
                             wrappers=[{"mask_velocity": {"indices": [9]}}]), 2)


def test_fast_env_is_a_gymnasium_vector_env_with_the_spaces_of_the_wrapped_env() -> None:
    envs = make_vec_env(EnvSpec(id="PendulumNoVel-v1", num_envs=4,
                                wrappers=[{"noisy": {"sigma": 0.1}}]))
    reference = make_vec_env(EnvSpec(id="PendulumNoVel-v1", num_envs=4, vectorization="sync",
                                     wrappers=[{"noisy": {"sigma": 0.1}}]))
    assert isinstance(envs, FastVectorEnv)
    assert envs.single_observation_space == reference.single_observation_space
    assert envs.single_action_space == reference.single_action_space
    assert envs.observation_space.shape == (4, 3)
    envs.close()
    reference.close()


def test_seeding_single_copies_is_refused_in_one_line() -> None:
    envs = make_vec_env(EnvSpec(id="CartPoleNoVel-v1", vectorization="fast"), 2, seed=0)
    with pytest.raises(ValueError, match="cannot reset single copies"):
        envs.reset(seed=[3, None], options={"reset_mask": np.array([True, False])})
    assert EnvSpec(id="CartPoleNoVel-v1").for_evaluation().vectorization is Vectorization.SYNC
    envs.close()


def test_more_episodes_than_fast_copies_play_as_gymnasium_s_envs(make_agent) -> None:
    """Back-to-back episodes are seeded as they start, which envpool cannot do: the same
    episodes as on a sync env of the same spec."""
    from evopop.agents import evaluate

    fast = make_vec_env("PendulumNoVel-v1", 3)
    sync = make_vec_env(EnvSpec(id="PendulumNoVel-v1", vectorization="sync"), 3)
    assert isinstance(fast, FastVectorEnv)
    agent = make_agent(sync)
    ours, theirs = evaluate(agent, fast, 5, seed=11), evaluate(agent, sync, 5, seed=11)
    np.testing.assert_array_equal(ours.returns, theirs.returns)
    assert len(set(ours.returns.tolist())) == 5  # five different episodes
    fast.close()
    sync.close()


def test_a_fast_copy_per_episode_plays_episode_j_from_seed_plus_j(make_agent) -> None:
    """With a copy per episode the evaluation stays on envpool: copy j is built with seed
    `seed + j`, so episode j's return is the same at any width, alone or in a batch."""
    from evopop.agents import evaluate
    from evopop.agents.evaluation import eval_env_spec

    spec = EnvSpec(id="PendulumNoVel-v1", num_envs=16)
    assert eval_env_spec(spec, 6).vectorization is Vectorization.FAST
    narrow, wide = make_vec_env(eval_env_spec(spec, 6)), make_vec_env(spec.with_copies(9))
    assert isinstance(narrow, FastVectorEnv) and narrow.num_envs == 6
    agent = make_agent(narrow)
    ours = evaluate(agent, narrow, 6, seed=11)
    np.testing.assert_array_equal(ours.returns, evaluate(agent, wide, 6, seed=11).returns)
    for j in (0, 4):
        alone = make_vec_env(spec.with_copies(1))
        assert evaluate(agent, alone, 1, seed=11 + j).returns[0] == ours.returns[j]
        alone.close()
    assert len(set(ours.returns.tolist())) == 6  # six different episodes
    narrow.close()
    wide.close()


def test_the_light_envpool_import_registers_every_id_fast_covers() -> None:
    """`evopop.envs.envpool_import` leaves the other families unimported, and a fresh process
    that went through it steps every base id `fast` covers, as the whole package does."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import evopop.envs.envpool_import\n"
        "from evopop.envs import make_vec_env\n"
        "from evopop.envs.coverage import FAST_BASE_IDS\n"
        "from evopop.envs.spec import EnvSpec\n"
        "for env_id in sorted(FAST_BASE_IDS):\n"
        "    envs = make_vec_env(EnvSpec(id=env_id, vectorization='fast'), 2, seed=3)\n"
        "    print(env_id, float(envs.reset(seed=3)[0].sum()))\n"
        "    envs.close()\n"
        "print('atari' if 'envpool.atari.registration' in sys.modules else 'classic only')\n")
    light = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=120, check=True).stdout.splitlines()
    whole = subprocess.run([sys.executable, "-c", "import envpool\n" + script.replace(
        "import evopop.envs.envpool_import\n", "")], capture_output=True, text=True,
        timeout=120, check=True).stdout.splitlines()
    assert light[-1] == "classic only" and whole[-1] == "atari"
    assert light[:-1] == whole[:-1] and len(light) == len(FAST_BASE_IDS) + 1
