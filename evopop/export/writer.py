"""`export_agent`: an agent file as a TorchScript or ONNX policy file that runs without evopop.

The file carries what a runner needs besides the graph, as validated JSON (`PolicyMetadata`):
the env to build (id, wrappers, kwargs, packages), the observation and action spaces, and the
names, shapes and dtypes of the inputs and outputs. ONNX keeps it in the model's
`metadata_props` under `evopop`, TorchScript as the extra file `evopop.json`. Files are written
atomically. onnx and onnxscript (the exporter's) are imported only when ONNX is asked for.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from evopop.agents.agent import Agent
from evopop.agents.checkpoint import agent_from_parts, read_file, unpack, weights_sha256
from evopop.agents.spaces import ActionKind, space_to_dict
from evopop.atomic import atomic_write_bytes
from evopop.envs import EnvSpec
from evopop.errors import one_line
from evopop.export.formats import ExportError, ExportFormat, parse_format
from evopop.export.policy import STATE_NAMES, build_policy, example_inputs, is_categorical

FORMAT = "evopop-policy"
FORMAT_VERSION = 1
OPSET = 18
"""ONNX opset of exported policies (onnxruntime has run it since 1.14)."""
METADATA_KEY = "evopop"
"""Key of the metadata in an ONNX model's `metadata_props`."""
TORCHSCRIPT_EXTRA = "evopop.json"
"""Extra file holding the metadata in a TorchScript archive."""
BATCH = "batch"
"""Name of the dynamic batch axis (number of envs) in input and output shapes."""
_EXAMPLE_BATCH = 2  # traced with 2 envs so that the batch axis stays symbolic
_ONNX_MAX_BYTES = (2 << 30) - (64 << 20)  # protobuf's 2 GiB limit, less room for the graph


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorInfo(_Strict):
    """One input or output: name, shape (`batch` is the dynamic env axis) and numpy dtype."""

    name: str
    shape: list[int | str]
    dtype: Literal["float32", "int64"]


class PolicyMetadata(_Strict):
    """What an exported file says about itself (everything a runner needs but the graph)."""

    format: Literal["evopop-policy"] = FORMAT
    format_version: Literal[1] = FORMAT_VERSION
    export_format: ExportFormat
    opset: int | None
    env: dict[str, Any] | None
    observation_space: dict[str, Any]
    action_space: dict[str, Any]
    cell: str
    num_layers: int
    hidden_size: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    methods: list[str]
    agent_sha256: str


def _recorded_env(meta: dict[str, Any], source: str) -> EnvSpec | None:
    """The env an agent file says it was trained on, if it says."""
    extra = meta.get("extra") or {}
    section = extra.get("env")
    try:
        if isinstance(section, dict) and section.get("id"):
            return EnvSpec.model_validate({**section, "vectorization": "sync"})
        if isinstance(extra.get("env_id"), str):
            return EnvSpec(id=extra["env_id"])
    except ValidationError as error:
        raise ExportError(f"{source} records a malformed env section: "
                          f"{one_line(error.errors()[0]['msg'])}") from None
    return None


def _load(agent_or_path: Agent | str | Path) -> tuple[Agent, EnvSpec | None]:
    if isinstance(agent_or_path, Agent):
        return agent_or_path, None
    source = str(agent_or_path)
    tensors, meta = unpack(read_file(agent_or_path), source)
    return agent_from_parts(tensors, meta, source=source), _recorded_env(meta, source)


def _env_section(env: EnvSpec | None) -> dict[str, Any] | None:
    """The part of an env spec that builds one env (vectorisation does not apply)."""
    if env is None:
        return None
    return env.model_dump(mode="json", include={"id", "wrappers", "kwargs", "packages"})


def describe(agent: Agent, fmt: ExportFormat, env: EnvSpec | None) -> PolicyMetadata:
    """The metadata of `agent` exported as `fmt`: input and output names, shapes and dtypes."""
    spec, obs_space = agent.spec, agent.observation_space
    state_shape: list[int | str] = [spec.num_layers, BATCH, spec.hidden_size]
    obs = TensorInfo(name="obs", shape=[BATCH, *obs_space.shape],
                     dtype="int64" if is_categorical(obs_space) else "float32")
    continuous = agent.action_spec.kind is ActionKind.CONTINUOUS
    action = TensorInfo(name="action", shape=[BATCH, *agent.action_spec.shape],
                        dtype="float32" if continuous else "int64")
    states = STATE_NAMES[spec.cell]
    return PolicyMetadata(
        export_format=fmt, opset=OPSET if fmt is ExportFormat.ONNX else None,
        env=_env_section(env), observation_space=space_to_dict(obs_space),
        action_space=space_to_dict(agent.action_space), cell=spec.cell.value,
        num_layers=spec.num_layers, hidden_size=spec.hidden_size,
        inputs=[obs, *(TensorInfo(name=s, shape=state_shape, dtype="float32") for s in states)],
        outputs=[action, *(TensorInfo(name=f"{s}_out", shape=state_shape, dtype="float32")
                           for s in states)],
        methods=["forward", "sample"] if fmt is ExportFormat.TORCHSCRIPT else ["forward"],
        agent_sha256=weights_sha256(agent))


def export_agent(agent_or_path: Agent | str | Path, fmt: ExportFormat | str, out: str | Path,
                 env: EnvSpec | str | None = None) -> PolicyMetadata:
    """Writes the agent's policy to `out` as a TorchScript or ONNX file and returns its metadata.

    An agent file's recorded env goes into the metadata; `env` replaces it (and is the only
    source for an `Agent` object).
    """
    fmt = parse_format(fmt)
    agent, recorded = _load(agent_or_path)
    policy = build_policy(agent)  # refuses what cannot be exported before anything else
    spec = EnvSpec(id=env) if isinstance(env, str) else env or recorded
    meta = describe(agent, fmt, spec)
    text = meta.model_dump_json()
    data = _torchscript_bytes(policy, text) if fmt is ExportFormat.TORCHSCRIPT else \
        _onnx_bytes(policy, example_inputs(agent, _EXAMPLE_BATCH), meta, text)
    atomic_write_bytes(out, data)
    return meta


def _torchscript_bytes(policy: torch.nn.Module, text: str) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch 2.13 marks TorchScript deprecated; it still works
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.jit")
        torch.jit.save(torch.jit.script(policy), buffer, _extra_files={TORCHSCRIPT_EXTRA: text})
    return buffer.getvalue()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's notes (skipped torchvision ops, deprecations) are not the user's concern."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _onnx_bytes(policy: torch.nn.Module, inputs: tuple[torch.Tensor, ...],
                meta: PolicyMetadata, text: str) -> bytes:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it; fail here, in one line)
    except ImportError as error:
        raise ExportError(f"ONNX export needs the {error.name} package: "
                          "pip install 'evopop[export]'") from None
    size = sum(t.numel() * t.element_size() for t in policy.state_dict().values())
    if size > _ONNX_MAX_BYTES:
        raise ExportError(f"the policy's {size / 2**30:.1f} GiB of weights exceed what one "
                          "ONNX file holds (2 GiB); export it as torchscript")
    batch = torch.export.Dim(BATCH, min=1)
    axes = {info.name: {info.shape.index(BATCH): batch} for info in meta.inputs}
    with _quiet_exporter():
        program = torch.onnx.export(
            policy, inputs, None, input_names=[i.name for i in meta.inputs],
            output_names=[o.name for o in meta.outputs], opset_version=OPSET, dynamo=True,
            dynamic_shapes=axes, verbose=False)
    proto = program.model_proto
    proto.metadata_props.add(key=METADATA_KEY, value=text)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def read_policy_metadata(path: str | Path) -> PolicyMetadata:
    """The metadata of an exported file, read without loading its graph."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"policy file not found: {path}")
    try:
        text = _torchscript_text(path) if zipfile.is_zipfile(path) else _onnx_text(path)
        return PolicyMetadata.model_validate(json.loads(text))
    except (KeyError, ValueError, OSError) as error:
        raise ExportError(f"{path} is not an evopop policy file ({one_line(str(error))})"
                          ) from None


def _torchscript_text(path: Path) -> str:
    """A TorchScript archive keeps extra files as `<name>/extra/<file>`."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith(f"/extra/{TORCHSCRIPT_EXTRA}")]
        if not names:
            raise KeyError(f"no {TORCHSCRIPT_EXTRA} in the archive")
        return archive.read(names[0]).decode()


def _onnx_text(path: Path) -> str:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except DecodeError as error:
        raise ValueError(f"not an ONNX model: {error}") from None
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return prop.value
    raise KeyError(f"no {METADATA_KEY!r} metadata")
