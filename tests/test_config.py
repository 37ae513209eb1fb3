"""Config validation: typed, range-checked, unknown keys named with the closest valid key."""

import pytest
import yaml

from evopop.config import ConfigError, dump_config, load_config, parse_config

BASE = {"env": {"id": "CartPoleNoVel-v1", "num_envs": 4}, "ppo": {"learn_step": 64}}


def _with(**sections):
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for dotted, value in sections.items():
        section, _, key = dotted.partition("__")
        if key:
            data.setdefault(section, {})[key] = value
        else:
            data[section] = value
    return data


def test_valid_config_builds_typed_sections():
    cfg = parse_config(_with(net__cell="gru", net__head=[32, 16], ppo__lr=3e-4))
    assert cfg.net.cell.value == "gru" and cfg.net.head == (32, 16)
    assert cfg.ppo.lr == 3e-4 and cfg.env.num_envs == 4


@pytest.mark.parametrize(("data", "expected"), [
    (_with(ppo__lerning_rate=1e-3), "unknown config key 'ppo.lerning_rate'"),
    (_with(ppo__btach_size=64), "did you mean 'batch_size'"),
    (_with(net__hiden_size=64), "did you mean 'hidden_size'"),
    (_with(env__num_env=4), "did you mean 'num_envs'"),
    (_with(max_step=10), "did you mean 'max_steps'"),
])
def test_unknown_keys_name_the_closest_valid_key(data, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        parse_config(data)


@pytest.mark.parametrize(("data", "fragment"), [
    (_with(env__num_envs=0), "env.num_envs"),
    (_with(ppo__batch_size=0), "batch_size must be a positive integer"),
    (_with(ppo__gamma=1.5), "gamma must be in [0, 1]"),
    (_with(ppo__batch_size=1000), "larger than a rollout"),
    (_with(net__cell="transformer"), "net.cell"),
    (_with(max_steps=-5), "max_steps"),
    ({"ppo": {}}, "env"),
    (_with(evolution={"mutation": {"hp_space": {"lr": {"low": "abc", "high": 1}}}}),
     "bounds must be numbers"),
    (_with(evolution={"mutation": {"hp_space": {"lr": {"low": 1e-4, "high": 1, "log": "no"}}}}),
     "log must be true or false"),
    (_with(evolution={"mutation": {"hp_space": {"lrr": {"low": 1e-4, "high": 1}}}}),
     "did you mean 'lr'"),
    (_with(evolution={"population_size": 2, "tournament_size": 3}), "tournament_size"),
    (_with(evolution={"mutation": {"none": 1.5}}), "evolution.mutation.none"),
    (_with(evolution={"mutation": {"mutation_sd": 0}}), "mutation_sd"),
    (_with(ppo__vf_clip=-1.0), "vf_clip must be > 0"),
])
def test_bad_values_are_one_line_errors(data, fragment):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_load_config_file_errors_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: {id: CartPole-v1\nppo: [\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("env: {id: CartPoleNoVel-v1, num_envs: 2}\nppo: {learn_step: 128}\n")
    cfg = load_config(good, {"ppo.lr": 0.01, "seed": 7})
    assert cfg.ppo.lr == 0.01 and cfg.seed == 7


def test_independent_stepping_fixes_its_worker_count_in_the_saved_config(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    config = parse_config({"env": {"id": "CartPoleNoVel-v1", "num_envs": 8,
                                   "vectorization": "independent"}})
    assert config.env.env_workers == 3
    monkeypatch.setattr("os.cpu_count", lambda: 16)  # e.g. resumed on a bigger machine
    assert parse_config(yaml.safe_load(dump_config(config))).env.env_workers == 3
    sync = parse_config({"env": {"id": "CartPoleNoVel-v1", "num_envs": 8}})
    assert sync.env.env_workers is None
    small = parse_config({"env": {"id": "CartPoleNoVel-v1", "num_envs": 2,
                                  "vectorization": "independent"}})
    assert small.env.env_workers == 2


@pytest.mark.parametrize(("settings", "flag", "workers", "forks"), [
    ({"backend": "processes", "parallel_members": 2}, None, 2, True),
    ({"backend": "processes", "parallel_members": 2}, 1, 1, False),  # the flag wins
    ({"backend": "processes", "parallel_members": 8}, None, 4, True),  # no more than members
    ({"backend": "local", "parallel_members": 2}, None, 2, False),
    ({"backend": "ray"}, None, None, False),  # Ray decides
])
def test_member_workers_and_whether_the_cli_starts_the_fork_server(settings, flag, workers,
                                                                   forks):
    config = parse_config({**BASE, **settings, "evolution": {"population_size": 4}})
    assert config.member_workers(flag) == workers
    assert config.forks_workers(flag) is forks
