#pragma once

namespace sluice {

// Largest gRPC message a coordinator or worker accepts. Control messages carry operator state
// inline (checkpoint acknowledgements up, restored state down in deployments), and that state
// can be large: the exactly-once kafka_sink keeps each pending transaction's records in it.
inline constexpr int kMaxGrpcMessageBytes = 256 << 20;

// How long one connection attempt between control-plane peers (coordinator <-> worker) may
// take: TCP connect and HTTP/2 handshake, up to the peer's SETTINGS frame. gRPC 1.51 reads it
// from GRPC_ARG_MIN_RECONNECT_BACKOFF_MS despite that name (the delay between attempts is
// GRPC_ARG_INITIAL/MAX_RECONNECT_BACKOFF_MS). 100 ms cut attempts short on a loaded host, and a
// worker was then taken for gone; this is gRPC's own default.
inline constexpr int kControlConnectTimeoutMs = 20'000;

}  // namespace sluice
