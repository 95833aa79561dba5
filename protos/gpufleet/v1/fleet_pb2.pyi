from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_OK: _ClassVar[Severity]
    SEVERITY_WARN: _ClassVar[Severity]
    SEVERITY_UNKNOWN: _ClassVar[Severity]
    SEVERITY_CRITICAL: _ClassVar[Severity]

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_NONE: _ClassVar[Action]
    ACTION_RESTART_APP: _ClassVar[Action]
    ACTION_DRAIN: _ClassVar[Action]
    ACTION_RESET_GPU: _ClassVar[Action]
    ACTION_REBOOT_NODE: _ClassVar[Action]
    ACTION_SERVICE: _ClassVar[Action]
SEVERITY_UNSPECIFIED: Severity
SEVERITY_OK: Severity
SEVERITY_WARN: Severity
SEVERITY_UNKNOWN: Severity
SEVERITY_CRITICAL: Severity
ACTION_UNSPECIFIED: Action
ACTION_NONE: Action
ACTION_RESTART_APP: Action
ACTION_DRAIN: Action
ACTION_RESET_GPU: Action
ACTION_REBOOT_NODE: Action
ACTION_SERVICE: Action

class EvidenceValue(_message.Message):
    __slots__ = ("text", "integer", "number", "flag")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    text: str
    integer: int
    number: float
    flag: bool
    def __init__(self, text: _Optional[str] = ..., integer: _Optional[int] = ..., number: _Optional[float] = ..., flag: _Optional[bool] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("check", "severity", "gpu", "message", "action", "evidence")
    class EvidenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: EvidenceValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[EvidenceValue, _Mapping]] = ...) -> None: ...
    CHECK_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    check: str
    severity: Severity
    gpu: int
    message: str
    action: Action
    evidence: _containers.MessageMap[str, EvidenceValue]
    def __init__(self, check: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., gpu: _Optional[int] = ..., message: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., evidence: _Optional[_Mapping[str, EvidenceValue]] = ...) -> None: ...

class GpuInfo(_message.Message):
    __slots__ = ("index", "uuid", "name", "serial", "board_part_number", "pci_bus_id", "vbios_version", "inforom_image_version")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    BOARD_PART_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PCI_BUS_ID_FIELD_NUMBER: _ClassVar[int]
    VBIOS_VERSION_FIELD_NUMBER: _ClassVar[int]
    INFOROM_IMAGE_VERSION_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    name: str
    serial: str
    board_part_number: str
    pci_bus_id: str
    vbios_version: str
    inforom_image_version: str
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., name: _Optional[str] = ..., serial: _Optional[str] = ..., board_part_number: _Optional[str] = ..., pci_bus_id: _Optional[str] = ..., vbios_version: _Optional[str] = ..., inforom_image_version: _Optional[str] = ...) -> None: ...

class NicRail(_message.Message):
    __slots__ = ("device", "port", "state", "rate_gbps", "gpu")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RATE_GBPS_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    device: str
    port: int
    state: str
    rate_gbps: float
    gpu: int
    def __init__(self, device: _Optional[str] = ..., port: _Optional[int] = ..., state: _Optional[str] = ..., rate_gbps: _Optional[float] = ..., gpu: _Optional[int] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("node", "hostname", "agent_version", "sku", "driver_version", "cuda_driver_version", "gpus", "nvlink_domain", "rack", "rails", "next_seq", "boot_id")
    NODE_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    NVLINK_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    RACK_FIELD_NUMBER: _ClassVar[int]
    RAILS_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQ_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    node: str
    hostname: str
    agent_version: str
    sku: str
    driver_version: str
    cuda_driver_version: str
    gpus: _containers.RepeatedCompositeFieldContainer[GpuInfo]
    nvlink_domain: str
    rack: str
    rails: _containers.RepeatedCompositeFieldContainer[NicRail]
    next_seq: int
    boot_id: str
    def __init__(self, node: _Optional[str] = ..., hostname: _Optional[str] = ..., agent_version: _Optional[str] = ..., sku: _Optional[str] = ..., driver_version: _Optional[str] = ..., cuda_driver_version: _Optional[str] = ..., gpus: _Optional[_Iterable[_Union[GpuInfo, _Mapping]]] = ..., nvlink_domain: _Optional[str] = ..., rack: _Optional[str] = ..., rails: _Optional[_Iterable[_Union[NicRail, _Mapping]]] = ..., next_seq: _Optional[int] = ..., boot_id: _Optional[str] = ...) -> None: ...

class GpuTelemetry(_message.Message):
    __slots__ = ("index", "temperature_c", "power_w", "energy_mj", "sm_clock_mhz", "gpu_util_pct", "memory_temp_c", "lost")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    POWER_W_FIELD_NUMBER: _ClassVar[int]
    ENERGY_MJ_FIELD_NUMBER: _ClassVar[int]
    SM_CLOCK_MHZ_FIELD_NUMBER: _ClassVar[int]
    GPU_UTIL_PCT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TEMP_C_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    index: int
    temperature_c: float
    power_w: float
    energy_mj: int
    sm_clock_mhz: float
    gpu_util_pct: float
    memory_temp_c: float
    lost: bool
    def __init__(self, index: _Optional[int] = ..., temperature_c: _Optional[float] = ..., power_w: _Optional[float] = ..., energy_mj: _Optional[int] = ..., sm_clock_mhz: _Optional[float] = ..., gpu_util_pct: _Optional[float] = ..., memory_temp_c: _Optional[float] = ..., lost: _Optional[bool] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("sampled_at", "verdict", "action", "findings", "gpus", "sweep_duration_s", "window_s", "directive_id")
    SAMPLED_AT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    SWEEP_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    DIRECTIVE_ID_FIELD_NUMBER: _ClassVar[int]
    sampled_at: float
    verdict: Severity
    action: Action
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    gpus: _containers.RepeatedCompositeFieldContainer[GpuTelemetry]
    sweep_duration_s: float
    window_s: float
    directive_id: str
    def __init__(self, sampled_at: _Optional[float] = ..., verdict: _Optional[_Union[Severity, str]] = ..., action: _Optional[_Union[Action, str]] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., gpus: _Optional[_Iterable[_Union[GpuTelemetry, _Mapping]]] = ..., sweep_duration_s: _Optional[float] = ..., window_s: _Optional[float] = ..., directive_id: _Optional[str] = ...) -> None: ...

class XidEvent(_message.Message):
    __slots__ = ("xid", "gpu", "pci_bus_id", "source", "message", "at", "severity", "action")
    XID_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    PCI_BUS_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    xid: int
    gpu: int
    pci_bus_id: str
    source: str
    message: str
    at: float
    severity: Severity
    action: Action
    def __init__(self, xid: _Optional[int] = ..., gpu: _Optional[int] = ..., pci_bus_id: _Optional[str] = ..., source: _Optional[str] = ..., message: _Optional[str] = ..., at: _Optional[float] = ..., severity: _Optional[_Union[Severity, str]] = ..., action: _Optional[_Union[Action, str]] = ...) -> None: ...

class RankExit(_message.Message):
    __slots__ = ("run_id", "attempt", "rank", "exit_code", "at", "reason", "stderr_tail")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STDERR_TAIL_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    attempt: int
    rank: int
    exit_code: int
    at: float
    reason: str
    stderr_tail: str
    def __init__(self, run_id: _Optional[str] = ..., attempt: _Optional[int] = ..., rank: _Optional[int] = ..., exit_code: _Optional[int] = ..., at: _Optional[float] = ..., reason: _Optional[str] = ..., stderr_tail: _Optional[str] = ...) -> None: ...

class RankProgress(_message.Message):
    __slots__ = ("run_id", "attempt", "rank", "step", "loss", "step_time_s", "tokens", "at")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    STEP_TIME_S_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    attempt: int
    rank: int
    step: int
    loss: float
    step_time_s: float
    tokens: int
    at: float
    def __init__(self, run_id: _Optional[str] = ..., attempt: _Optional[int] = ..., rank: _Optional[int] = ..., step: _Optional[int] = ..., loss: _Optional[float] = ..., step_time_s: _Optional[float] = ..., tokens: _Optional[int] = ..., at: _Optional[float] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("xid", "rank_exit", "progress")
    XID_FIELD_NUMBER: _ClassVar[int]
    RANK_EXIT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    xid: XidEvent
    rank_exit: RankExit
    progress: RankProgress
    def __init__(self, xid: _Optional[_Union[XidEvent, _Mapping]] = ..., rank_exit: _Optional[_Union[RankExit, _Mapping]] = ..., progress: _Optional[_Union[RankProgress, _Mapping]] = ...) -> None: ...

class BurnInSize(_message.Message):
    __slots__ = ("bytes", "time_us", "algbw_gbps", "busbw_gbps", "wrong")
    BYTES_FIELD_NUMBER: _ClassVar[int]
    TIME_US_FIELD_NUMBER: _ClassVar[int]
    ALGBW_GBPS_FIELD_NUMBER: _ClassVar[int]
    BUSBW_GBPS_FIELD_NUMBER: _ClassVar[int]
    WRONG_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    time_us: float
    algbw_gbps: float
    busbw_gbps: float
    wrong: int
    def __init__(self, bytes: _Optional[int] = ..., time_us: _Optional[float] = ..., algbw_gbps: _Optional[float] = ..., busbw_gbps: _Optional[float] = ..., wrong: _Optional[int] = ...) -> None: ...

class BurnInResult(_message.Message):
    __slots__ = ("burnin_id", "backend", "world_size", "sizes", "timed_out", "error", "duration_s", "nccl_version")
    BURNIN_ID_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    NCCL_VERSION_FIELD_NUMBER: _ClassVar[int]
    burnin_id: str
    backend: str
    world_size: int
    sizes: _containers.RepeatedCompositeFieldContainer[BurnInSize]
    timed_out: bool
    error: str
    duration_s: float
    nccl_version: str
    def __init__(self, burnin_id: _Optional[str] = ..., backend: _Optional[str] = ..., world_size: _Optional[int] = ..., sizes: _Optional[_Iterable[_Union[BurnInSize, _Mapping]]] = ..., timed_out: _Optional[bool] = ..., error: _Optional[str] = ..., duration_s: _Optional[float] = ..., nccl_version: _Optional[str] = ...) -> None: ...

class DirectiveResult(_message.Message):
    __slots__ = ("directive_id", "ok", "message", "burnin")
    DIRECTIVE_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BURNIN_FIELD_NUMBER: _ClassVar[int]
    directive_id: str
    ok: bool
    message: str
    burnin: BurnInResult
    def __init__(self, directive_id: _Optional[str] = ..., ok: _Optional[bool] = ..., message: _Optional[str] = ..., burnin: _Optional[_Union[BurnInResult, _Mapping]] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("seq", "sent_at", "node", "hello", "report", "event", "result")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    sent_at: float
    node: str
    hello: Hello
    report: Report
    event: Event
    result: DirectiveResult
    def __init__(self, seq: _Optional[int] = ..., sent_at: _Optional[float] = ..., node: _Optional[str] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., report: _Optional[_Union[Report, _Mapping]] = ..., event: _Optional[_Union[Event, _Mapping]] = ..., result: _Optional[_Union[DirectiveResult, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("last_stored_seq", "controller_id", "report_interval_s", "node")
    LAST_STORED_SEQ_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_ID_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    last_stored_seq: int
    controller_id: str
    report_interval_s: float
    node: str
    def __init__(self, last_stored_seq: _Optional[int] = ..., controller_id: _Optional[str] = ..., report_interval_s: _Optional[float] = ..., node: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class CheckNow(_message.Message):
    __slots__ = ("window_s",)
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    window_s: float
    def __init__(self, window_s: _Optional[float] = ...) -> None: ...

class RunBurnIn(_message.Message):
    __slots__ = ("burnin_id", "sizes_bytes", "warmup_iters", "iters", "world_size", "rank_offset", "local_ranks", "master_addr", "master_port", "timeout_s", "backend", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BURNIN_ID_FIELD_NUMBER: _ClassVar[int]
    SIZES_BYTES_FIELD_NUMBER: _ClassVar[int]
    WARMUP_ITERS_FIELD_NUMBER: _ClassVar[int]
    ITERS_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    RANK_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LOCAL_RANKS_FIELD_NUMBER: _ClassVar[int]
    MASTER_ADDR_FIELD_NUMBER: _ClassVar[int]
    MASTER_PORT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    burnin_id: str
    sizes_bytes: _containers.RepeatedScalarFieldContainer[int]
    warmup_iters: int
    iters: int
    world_size: int
    rank_offset: int
    local_ranks: int
    master_addr: str
    master_port: int
    timeout_s: float
    backend: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, burnin_id: _Optional[str] = ..., sizes_bytes: _Optional[_Iterable[int]] = ..., warmup_iters: _Optional[int] = ..., iters: _Optional[int] = ..., world_size: _Optional[int] = ..., rank_offset: _Optional[int] = ..., local_ranks: _Optional[int] = ..., master_addr: _Optional[str] = ..., master_port: _Optional[int] = ..., timeout_s: _Optional[float] = ..., backend: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RankAssignment(_message.Message):
    __slots__ = ("rank", "local_rank", "gpu", "rail")
    RANK_FIELD_NUMBER: _ClassVar[int]
    LOCAL_RANK_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    RAIL_FIELD_NUMBER: _ClassVar[int]
    rank: int
    local_rank: int
    gpu: int
    rail: str
    def __init__(self, rank: _Optional[int] = ..., local_rank: _Optional[int] = ..., gpu: _Optional[int] = ..., rail: _Optional[str] = ...) -> None: ...

class StartRanks(_message.Message):
    __slots__ = ("run_id", "attempt", "argv", "env", "master_addr", "master_port", "world_size", "ranks", "workdir")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    MASTER_ADDR_FIELD_NUMBER: _ClassVar[int]
    MASTER_PORT_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    RANKS_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    attempt: int
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    master_addr: str
    master_port: int
    world_size: int
    ranks: _containers.RepeatedCompositeFieldContainer[RankAssignment]
    workdir: str
    def __init__(self, run_id: _Optional[str] = ..., attempt: _Optional[int] = ..., argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., master_addr: _Optional[str] = ..., master_port: _Optional[int] = ..., world_size: _Optional[int] = ..., ranks: _Optional[_Iterable[_Union[RankAssignment, _Mapping]]] = ..., workdir: _Optional[str] = ...) -> None: ...

class StopRanks(_message.Message):
    __slots__ = ("run_id", "attempt", "grace_s")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    GRACE_S_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    attempt: int
    grace_s: float
    def __init__(self, run_id: _Optional[str] = ..., attempt: _Optional[int] = ..., grace_s: _Optional[float] = ...) -> None: ...

class SetDrain(_message.Message):
    __slots__ = ("drained", "reason")
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    drained: bool
    reason: str
    def __init__(self, drained: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class Directive(_message.Message):
    __slots__ = ("id", "issued_at", "check_now", "run_burnin", "start_ranks", "stop_ranks", "set_drain")
    ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    CHECK_NOW_FIELD_NUMBER: _ClassVar[int]
    RUN_BURNIN_FIELD_NUMBER: _ClassVar[int]
    START_RANKS_FIELD_NUMBER: _ClassVar[int]
    STOP_RANKS_FIELD_NUMBER: _ClassVar[int]
    SET_DRAIN_FIELD_NUMBER: _ClassVar[int]
    id: str
    issued_at: float
    check_now: CheckNow
    run_burnin: RunBurnIn
    start_ranks: StartRanks
    stop_ranks: StopRanks
    set_drain: SetDrain
    def __init__(self, id: _Optional[str] = ..., issued_at: _Optional[float] = ..., check_now: _Optional[_Union[CheckNow, _Mapping]] = ..., run_burnin: _Optional[_Union[RunBurnIn, _Mapping]] = ..., start_ranks: _Optional[_Union[StartRanks, _Mapping]] = ..., stop_ranks: _Optional[_Union[StopRanks, _Mapping]] = ..., set_drain: _Optional[_Union[SetDrain, _Mapping]] = ...) -> None: ...

class ControllerMessage(_message.Message):
    __slots__ = ("welcome", "ack", "directive")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    ack: Ack
    directive: Directive
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., directive: _Optional[_Union[Directive, _Mapping]] = ...) -> None: ...

class NodeView(_message.Message):
    __slots__ = ("name", "state", "verdict", "sku", "gpus", "nvlink_domain", "rack", "connected", "last_seen", "state_reason", "driver_version", "hostname")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    NVLINK_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    RACK_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    verdict: str
    sku: str
    gpus: int
    nvlink_domain: str
    rack: str
    connected: bool
    last_seen: float
    state_reason: str
    driver_version: str
    hostname: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., verdict: _Optional[str] = ..., sku: _Optional[str] = ..., gpus: _Optional[int] = ..., nvlink_domain: _Optional[str] = ..., rack: _Optional[str] = ..., connected: _Optional[bool] = ..., last_seen: _Optional[float] = ..., state_reason: _Optional[str] = ..., driver_version: _Optional[str] = ..., hostname: _Optional[str] = ...) -> None: ...

class Transition(_message.Message):
    __slots__ = ("node", "from_state", "to_state", "cause", "evidence_id", "at", "actor")
    NODE_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    node: str
    from_state: str
    to_state: str
    cause: str
    evidence_id: str
    at: float
    actor: str
    def __init__(self, node: _Optional[str] = ..., from_state: _Optional[str] = ..., to_state: _Optional[str] = ..., cause: _Optional[str] = ..., evidence_id: _Optional[str] = ..., at: _Optional[float] = ..., actor: _Optional[str] = ...) -> None: ...

class FleetEvent(_message.Message):
    __slots__ = ("id", "node", "kind", "message", "at", "detail")
    class DetailEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    id: int
    node: str
    kind: str
    message: str
    at: float
    detail: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[int] = ..., node: _Optional[str] = ..., kind: _Optional[str] = ..., message: _Optional[str] = ..., at: _Optional[float] = ..., detail: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("state", "sku", "nvlink_domain")
    STATE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NVLINK_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    state: str
    sku: str
    nvlink_domain: str
    def __init__(self, state: _Optional[str] = ..., sku: _Optional[str] = ..., nvlink_domain: _Optional[str] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeView]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeView, _Mapping]]] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("name", "history_limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    history_limit: int
    def __init__(self, name: _Optional[str] = ..., history_limit: _Optional[int] = ...) -> None: ...

class NodeDetail(_message.Message):
    __slots__ = ("node", "findings", "history", "gpus", "rails", "findings_at", "burnin", "burnin_at")
    NODE_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    RAILS_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_AT_FIELD_NUMBER: _ClassVar[int]
    BURNIN_FIELD_NUMBER: _ClassVar[int]
    BURNIN_AT_FIELD_NUMBER: _ClassVar[int]
    node: NodeView
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    history: _containers.RepeatedCompositeFieldContainer[Transition]
    gpus: _containers.RepeatedCompositeFieldContainer[GpuInfo]
    rails: _containers.RepeatedCompositeFieldContainer[NicRail]
    findings_at: float
    burnin: BurninNodeResult
    burnin_at: float
    def __init__(self, node: _Optional[_Union[NodeView, _Mapping]] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., history: _Optional[_Iterable[_Union[Transition, _Mapping]]] = ..., gpus: _Optional[_Iterable[_Union[GpuInfo, _Mapping]]] = ..., rails: _Optional[_Iterable[_Union[NicRail, _Mapping]]] = ..., findings_at: _Optional[float] = ..., burnin: _Optional[_Union[BurninNodeResult, _Mapping]] = ..., burnin_at: _Optional[float] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("node", "reason")
    NODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node: str
    reason: str
    def __init__(self, node: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("node", "since", "limit")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    node: str
    since: float
    limit: int
    def __init__(self, node: _Optional[str] = ..., since: _Optional[float] = ..., limit: _Optional[int] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[FleetEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[FleetEvent, _Mapping]]] = ...) -> None: ...

class PreflightRequest(_message.Message):
    __slots__ = ("nodes", "all", "run", "burnin", "max_age_s", "timeout_s")
    NODES_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    BURNIN_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_S_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    run: str
    burnin: bool
    max_age_s: float
    timeout_s: float
    def __init__(self, nodes: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ..., run: _Optional[str] = ..., burnin: _Optional[bool] = ..., max_age_s: _Optional[float] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class GateReason(_message.Message):
    __slots__ = ("check", "severity", "gpu", "message", "evidence_age_s", "evidence_id")
    CHECK_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_AGE_S_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_ID_FIELD_NUMBER: _ClassVar[int]
    check: str
    severity: Severity
    gpu: int
    message: str
    evidence_age_s: float
    evidence_id: str
    def __init__(self, check: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., gpu: _Optional[int] = ..., message: _Optional[str] = ..., evidence_age_s: _Optional[float] = ..., evidence_id: _Optional[str] = ...) -> None: ...

class NodeVerdict(_message.Message):
    __slots__ = ("node", "admitted", "reasons", "notes")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    node: str
    admitted: bool
    reasons: _containers.RepeatedCompositeFieldContainer[GateReason]
    notes: _containers.RepeatedCompositeFieldContainer[GateReason]
    def __init__(self, node: _Optional[str] = ..., admitted: _Optional[bool] = ..., reasons: _Optional[_Iterable[_Union[GateReason, _Mapping]]] = ..., notes: _Optional[_Iterable[_Union[GateReason, _Mapping]]] = ...) -> None: ...

class PreflightProgress(_message.Message):
    __slots__ = ("total", "done", "retesting", "phase", "node")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    RETESTING_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    total: int
    done: int
    retesting: int
    phase: str
    node: str
    def __init__(self, total: _Optional[int] = ..., done: _Optional[int] = ..., retesting: _Optional[int] = ..., phase: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...

class PreflightUpdate(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: PreflightProgress
    result: PreflightResult
    def __init__(self, progress: _Optional[_Union[PreflightProgress, _Mapping]] = ..., result: _Optional[_Union[PreflightResult, _Mapping]] = ...) -> None: ...

class PreflightResult(_message.Message):
    __slots__ = ("run", "verdicts")
    RUN_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    run: str
    verdicts: _containers.RepeatedCompositeFieldContainer[NodeVerdict]
    def __init__(self, run: _Optional[str] = ..., verdicts: _Optional[_Iterable[_Union[NodeVerdict, _Mapping]]] = ...) -> None: ...

class BurninRequest(_message.Message):
    __slots__ = ("nodes", "all", "sizes", "iters", "warmup_iters", "timeout_s", "multi_node", "node_options", "ranks_per_node", "max_parallel", "master_port", "repeats", "cross_domain")
    class NodeOptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODES_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    ITERS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_ITERS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MULTI_NODE_FIELD_NUMBER: _ClassVar[int]
    NODE_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    RANKS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_FIELD_NUMBER: _ClassVar[int]
    MASTER_PORT_FIELD_NUMBER: _ClassVar[int]
    REPEATS_FIELD_NUMBER: _ClassVar[int]
    CROSS_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    sizes: str
    iters: int
    warmup_iters: int
    timeout_s: float
    multi_node: bool
    node_options: _containers.ScalarMap[str, str]
    ranks_per_node: int
    max_parallel: int
    master_port: int
    repeats: int
    cross_domain: bool
    def __init__(self, nodes: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ..., sizes: _Optional[str] = ..., iters: _Optional[int] = ..., warmup_iters: _Optional[int] = ..., timeout_s: _Optional[float] = ..., multi_node: _Optional[bool] = ..., node_options: _Optional[_Mapping[str, str]] = ..., ranks_per_node: _Optional[int] = ..., max_parallel: _Optional[int] = ..., master_port: _Optional[int] = ..., repeats: _Optional[int] = ..., cross_domain: _Optional[bool] = ...) -> None: ...

class BurninNodeResult(_message.Message):
    __slots__ = ("node", "members", "passed", "severity", "check", "message", "busbw_gbps", "cohort_median_gbps", "threshold_gbps", "sizes", "evidence_id", "backend", "duration_s")
    NODE_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BUSBW_GBPS_FIELD_NUMBER: _ClassVar[int]
    COHORT_MEDIAN_GBPS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_GBPS_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_ID_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    node: str
    members: _containers.RepeatedScalarFieldContainer[str]
    passed: bool
    severity: Severity
    check: str
    message: str
    busbw_gbps: float
    cohort_median_gbps: float
    threshold_gbps: float
    sizes: _containers.RepeatedCompositeFieldContainer[BurnInSize]
    evidence_id: str
    backend: str
    duration_s: float
    def __init__(self, node: _Optional[str] = ..., members: _Optional[_Iterable[str]] = ..., passed: _Optional[bool] = ..., severity: _Optional[_Union[Severity, str]] = ..., check: _Optional[str] = ..., message: _Optional[str] = ..., busbw_gbps: _Optional[float] = ..., cohort_median_gbps: _Optional[float] = ..., threshold_gbps: _Optional[float] = ..., sizes: _Optional[_Iterable[_Union[BurnInSize, _Mapping]]] = ..., evidence_id: _Optional[str] = ..., backend: _Optional[str] = ..., duration_s: _Optional[float] = ...) -> None: ...

class BurninReport(_message.Message):
    __slots__ = ("nodes", "groups", "notes")
    NODES_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[BurninNodeResult]
    groups: _containers.RepeatedCompositeFieldContainer[BurninNodeResult]
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nodes: _Optional[_Iterable[_Union[BurninNodeResult, _Mapping]]] = ..., groups: _Optional[_Iterable[_Union[BurninNodeResult, _Mapping]]] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class BurninUpdate(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: PreflightProgress
    result: BurninReport
    def __init__(self, progress: _Optional[_Union[PreflightProgress, _Mapping]] = ..., result: _Optional[_Union[BurninReport, _Mapping]] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ("spec_toml", "source")
    SPEC_TOML_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    spec_toml: str
    source: str
    def __init__(self, spec_toml: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunView(_message.Message):
    __slots__ = ("name", "state", "attempt", "restarts", "restart_budget", "step", "target_steps", "loss", "step_time_s", "started_at", "ended_at", "nodes", "reason", "world_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    RESTART_BUDGET_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TARGET_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    STEP_TIME_S_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    attempt: int
    restarts: int
    restart_budget: int
    step: int
    target_steps: int
    loss: float
    step_time_s: float
    started_at: float
    ended_at: float
    nodes: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    world_size: int
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., attempt: _Optional[int] = ..., restarts: _Optional[int] = ..., restart_budget: _Optional[int] = ..., step: _Optional[int] = ..., target_steps: _Optional[int] = ..., loss: _Optional[float] = ..., step_time_s: _Optional[float] = ..., started_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., nodes: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., world_size: _Optional[int] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("at", "kind", "node", "attempt", "message")
    AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    at: float
    kind: str
    node: str
    attempt: int
    message: str
    def __init__(self, at: _Optional[float] = ..., kind: _Optional[str] = ..., node: _Optional[str] = ..., attempt: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Goodput(_message.Message):
    __slots__ = ("wall_s", "productive_s", "recomputed_s", "detection_s", "restart_s", "other_s", "productive_steps", "recomputed_steps", "restarts", "goodput", "energy_j", "productive_energy_j", "joules_per_step", "joules_per_token")
    WALL_S_FIELD_NUMBER: _ClassVar[int]
    PRODUCTIVE_S_FIELD_NUMBER: _ClassVar[int]
    RECOMPUTED_S_FIELD_NUMBER: _ClassVar[int]
    DETECTION_S_FIELD_NUMBER: _ClassVar[int]
    RESTART_S_FIELD_NUMBER: _ClassVar[int]
    OTHER_S_FIELD_NUMBER: _ClassVar[int]
    PRODUCTIVE_STEPS_FIELD_NUMBER: _ClassVar[int]
    RECOMPUTED_STEPS_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    GOODPUT_FIELD_NUMBER: _ClassVar[int]
    ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    PRODUCTIVE_ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    JOULES_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    JOULES_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    wall_s: float
    productive_s: float
    recomputed_s: float
    detection_s: float
    restart_s: float
    other_s: float
    productive_steps: int
    recomputed_steps: int
    restarts: int
    goodput: float
    energy_j: float
    productive_energy_j: float
    joules_per_step: float
    joules_per_token: float
    def __init__(self, wall_s: _Optional[float] = ..., productive_s: _Optional[float] = ..., recomputed_s: _Optional[float] = ..., detection_s: _Optional[float] = ..., restart_s: _Optional[float] = ..., other_s: _Optional[float] = ..., productive_steps: _Optional[int] = ..., recomputed_steps: _Optional[int] = ..., restarts: _Optional[int] = ..., goodput: _Optional[float] = ..., energy_j: _Optional[float] = ..., productive_energy_j: _Optional[float] = ..., joules_per_step: _Optional[float] = ..., joules_per_token: _Optional[float] = ...) -> None: ...

class RunPlacementNode(_message.Message):
    __slots__ = ("node", "domain", "ep_group", "ranks")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    EP_GROUP_FIELD_NUMBER: _ClassVar[int]
    RANKS_FIELD_NUMBER: _ClassVar[int]
    node: str
    domain: str
    ep_group: int
    ranks: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, node: _Optional[str] = ..., domain: _Optional[str] = ..., ep_group: _Optional[int] = ..., ranks: _Optional[_Iterable[int]] = ...) -> None: ...

class RunDetail(_message.Message):
    __slots__ = ("run", "events", "goodput", "placement", "spares")
    class SparesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    GOODPUT_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    SPARES_FIELD_NUMBER: _ClassVar[int]
    run: RunView
    events: _containers.RepeatedCompositeFieldContainer[RunEvent]
    goodput: Goodput
    placement: _containers.RepeatedCompositeFieldContainer[RunPlacementNode]
    spares: _containers.ScalarMap[str, str]
    def __init__(self, run: _Optional[_Union[RunView, _Mapping]] = ..., events: _Optional[_Iterable[_Union[RunEvent, _Mapping]]] = ..., goodput: _Optional[_Union[Goodput, _Mapping]] = ..., placement: _Optional[_Iterable[_Union[RunPlacementNode, _Mapping]]] = ..., spares: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunView]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunView, _Mapping]]] = ...) -> None: ...
