"""Agent files: one safetensors file holding tensors plus a JSON metadata header.

Nothing is ever unpickled: safetensors is a flat tensor format, and spec, hyperparameters and spaces
travel as JSON. Writes go to a temporary file that is renamed over the target, so a crash or kill
leaves either the old file or the new one, never a torn one. Files are device-free: tensors are
always saved from CPU copies, and a file loads onto whatever device the caller names.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as dump_tensors

from evopop.agents.agent import Agent
from evopop.agents.file_schema import (
    AgentFileError,
    check_state,
    check_weights,
    validate_header,
)
from evopop.agents.spaces import space_from_dict, space_to_dict
from evopop.atomic import atomic_write_bytes
from evopop.errors import one_line

FORMAT = "evopop-agent"
FORMAT_VERSION = 1
_META_KEY = "evopop"
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")


def agent_tensors(agent: Agent, include_optimizer: bool = True) -> dict[str, torch.Tensor]:
    """Every tensor of an agent under a flat, stable key, on the CPU."""
    tensors = {f"net.{k}": _host(v) for k, v in agent.net.state_dict().items()}
    for name, norm in (("obs_norm", agent.obs_norm), ("reward_norm", agent.reward_scaler)):
        if norm is not None:
            for key, value in norm.rms.state().items():
                tensors[f"{name}.{key}"] = torch.from_numpy(np.asarray(value, np.float64))
    if include_optimizer:
        for idx, slots in agent.optimizer.state_dict()["state"].items():
            for slot, value in slots.items():
                tensors[f"optim.{idx}.{slot}"] = _host(torch.as_tensor(value))
    return tensors


def _host(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().cpu().contiguous()


def agent_metadata(agent: Agent, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    groups = agent.optimizer.state_dict()["param_groups"]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": agent.spec.to_dict(),
        "params": agent.params.to_dict(),
        "observation_space": space_to_dict(agent.observation_space),
        "action_space": space_to_dict(agent.action_space),
        # lr is not saved: `Agent.apply_lr` derives it from params before every update
        "optimizer_groups": [{k: v for k, v in g.items() if k not in ("params", "lr")}
                             for g in groups],
        "extra": extra or {},
    }


def weights_sha256(agent: Agent) -> str:
    """Hash of what decides the agent's actions (weights and normaliser statistics, not the
    optimizer), order-stable, to compare runs for bit-identity."""
    digest = hashlib.sha256()
    for name, tensor in sorted(agent_tensors(agent, include_optimizer=False).items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def pack(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> bytes:
    """Tensors plus a JSON header as safetensors bytes."""
    return dump_tensors(tensors, metadata={_META_KEY: json.dumps(meta)})


def unpack(data: bytes, source: str = "<bytes>") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Inverse of `pack`. Only the safetensors format is parsed, so a pickle payload never runs;
    such a file is named as what it is."""
    return _parsed(data, source, with_tensors=True)


def unpack_metadata(data: bytes, source: str = "<bytes>") -> dict[str, Any]:
    """`pack`'s JSON header alone (no tensor is read)."""
    return _parsed(data, source, with_tensors=False)[1]


def _parsed(data: bytes, source: str, with_tensors: bool
            ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        header_len = int.from_bytes(data[:8], "little")
        if not 0 < header_len <= len(data) - 8:
            raise ValueError("bad header length")
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads(header["__metadata__"][_META_KEY])
        tensors = load_tensors(data) if with_tensors else {}
    except (SafetensorError, KeyError, TypeError, ValueError) as err:
        if data[:4].startswith(_PICKLE_MAGIC):
            raise AgentFileError(
                f"{source} looks like a pickle/torch.save file; evopop never unpickles files "
                "(agent files are safetensors)"
            ) from None
        raise AgentFileError(f"{source} is not a valid evopop file ({err})") from None
    return tensors, meta


def _check_format(meta: Any, source: str, expected: str) -> None:
    if not isinstance(meta, dict):
        raise AgentFileError(f"{source}: its header is not a JSON object")
    if meta.get("format") != expected or meta.get("format_version") != FORMAT_VERSION:
        raise AgentFileError(
            f"{source}: unsupported file format {meta.get('format')!r} "
            f"version {meta.get('format_version')!r} (expected {expected} v{FORMAT_VERSION})"
        )


def agent_to_bytes(
    agent: Agent, include_optimizer: bool = True, extra: dict[str, Any] | None = None
) -> bytes:
    """One agent as self-describing bytes: what agent files hold and what workers exchange."""
    return pack(agent_tensors(agent, include_optimizer), agent_metadata(agent, extra))


def agent_from_parts(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], device: str | torch.device = "cpu",
    source: str = "<bytes>",
) -> Agent:
    """Rebuilds an agent (network, normalisers, optimizer state when saved) on `device`, after
    its header has been validated and found to account for exactly the weights carried."""
    _check_format(meta, source, FORMAT)
    spec, params = validate_header(meta, source)
    observation = space_from_dict(meta["observation_space"])
    action = space_from_dict(meta["action_space"])
    check_weights(spec, observation, action, tensors, source)
    agent = Agent(observation, action, spec, params, seed=None)  # check_weights: all loaded
    check_state(agent, tensors, meta["optimizer_groups"], source)
    load_agent_tensors(agent, tensors, meta["optimizer_groups"])
    return agent.to(device)


def agent_from_bytes(
    data: bytes, source: str = "<bytes>", device: str | torch.device = "cpu"
) -> Agent:
    tensors, meta = unpack(data, source)
    return agent_from_parts(tensors, meta, device, source)


def save_agent(
    agent: Agent, path: str | Path, include_optimizer: bool = True,
    extra: dict[str, Any] | None = None,
) -> None:
    """Saves the agent atomically; `extra` is free JSON (env id, fitness, lineage...)."""
    atomic_write_bytes(path, agent_to_bytes(agent, include_optimizer, extra))


def save_agent_bytes(data: bytes, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """`save_agent` for an agent held as `agent_to_bytes` made it, without rebuilding it: the
    same file, byte for byte."""
    tensors, meta = unpack(data)
    atomic_write_bytes(path, pack(tensors, {**meta, "extra": extra or {}}))


def read_file(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise AgentFileError(f"agent file not found: {path}")
    return path.read_bytes()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON header of an agent file, checked for format and version."""
    _, meta = unpack(read_file(path), str(path))
    _check_format(meta, str(path), FORMAT)
    return meta


def load_agent(path: str | Path, device: str | torch.device = "cpu") -> Agent:
    """Loads an agent file written by `save_agent` onto `device`."""
    return agent_from_bytes(read_file(path), str(path), device)


def load_agent_tensors(
    agent: Agent, tensors: dict[str, torch.Tensor], optimizer_groups: list[dict[str, Any]]
) -> None:
    """Puts saved tensors into an agent of the same spec."""
    net_state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    try:
        agent.net.load_state_dict(net_state)
    except RuntimeError as err:
        raise AgentFileError(one_line(f"agent file weights do not match its spec: {err}")) \
            from None
    for name, norm in (("obs_norm", agent.obs_norm), ("reward_norm", agent.reward_scaler)):
        if norm is not None and f"{name}.mean" in tensors:
            norm.rms.load({k: tensors[f"{name}.{k}"].numpy() for k in ("mean", "var", "count")})
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, slot = key.split(".", 2)
            slots.setdefault(int(idx), {})[slot] = value
    if slots:
        count = len(list(agent.net.parameters()))
        lr = agent.optimizer.param_groups[0]["lr"]  # the fresh optimizer's: files carry none
        groups = [dict(g, params=list(range(count)), lr=lr) for g in optimizer_groups]
        agent.optimizer.load_state_dict({"state": slots, "param_groups": groups})
