#pragma once

#include <string>

namespace sluice {

// The host a process tells its peers to reach it at, when it binds `bind_host`: the bind
// host itself unless that is a wildcard (0.0.0.0, ::, [::] or empty); then $POD_IP (Kubernetes'
// downward API), else the first non-loopback IPv4 address of this machine's interfaces, else
// the host name. `--advertise-address` overrides all of this.
std::string DefaultAdvertiseHost(const std::string& bind_host);

// Whether `host` is a wildcard bind address.
bool IsWildcardHost(const std::string& host);

}  // namespace sluice
