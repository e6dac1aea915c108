#pragma once

#include <string>

#include "yaml-cpp/yaml.h"

namespace sluice::plugin {

// The options a plugin operator is given: its YAML mapping without the engine's own keys
// (id, type, parallelism, input, inputs, key) as one JSON object. Plain YAML scalars that read
// as integers, numbers, true/false or null become JSON numbers, booleans and null; quoted
// scalars and everything else become strings; sequences and mappings nest.
std::string OptionsJson(const YAML::Node& config);

// Appends `node` as JSON.
void AppendYamlAsJson(const YAML::Node& node, std::string* out);

// Appends `s` as a quoted JSON string.
void AppendJsonString(const std::string& s, std::string* out);

}  // namespace sluice::plugin
