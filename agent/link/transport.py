"""The gRPC seam of the link: channel construction and the AgentLink.Connect stream."""

from __future__ import annotations

from typing import TypeAlias

import grpc

from agent.link.config import LinkConfig, TlsConfig
from protos.gpufleet.v1 import fleet_pb2

_SERVICE = fleet_pb2.DESCRIPTOR.services_by_name["AgentLink"]
CONNECT_METHOD = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['Connect'].name}"

ConnectCall: TypeAlias = (
    "grpc.aio.StreamStreamCall[fleet_pb2.AgentMessage, fleet_pb2.ControllerMessage]"
)


def channel_options(config: LinkConfig, tls: TlsConfig | None) -> list[tuple[str, int | str]]:
    """Bounded channel options: keepalive, message size, no transparent retries."""
    options: list[tuple[str, int | str]] = [
        ("grpc.keepalive_time_ms", int(config.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(config.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.enable_retries", 0),
    ]
    if tls is not None and tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return options


def make_channel(target: str, tls: TlsConfig | None, config: LinkConfig) -> grpc.aio.Channel:
    """A fresh channel to `target` ("host:port"); insecure when `tls` is None."""
    options = channel_options(config, tls)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_pem, private_key=tls.key_pem, certificate_chain=tls.cert_pem
    )
    return grpc.aio.secure_channel(target, credentials, options=options)


def _serialize(message: fleet_pb2.AgentMessage) -> bytes:
    return message.SerializeToString()


def open_stream(channel: grpc.aio.Channel) -> ConnectCall:
    """Start AgentLink.Connect; messages are then written and read on the returned call."""
    method = channel.stream_stream(
        CONNECT_METHOD,
        request_serializer=_serialize,
        response_deserializer=fleet_pb2.ControllerMessage.FromString,
    )
    return method()
