#pragma once

namespace sluice {

// Largest gRPC message a coordinator or worker accepts. Control messages carry operator state
// inline (checkpoint acknowledgements up, restored state down in deployments), and that state
// can be large: the exactly-once kafka_sink keeps each pending transaction's records in it.
inline constexpr int kMaxGrpcMessageBytes = 256 << 20;

}  // namespace sluice
