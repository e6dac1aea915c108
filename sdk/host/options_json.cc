#include "sdk/host/options_json.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sluice::plugin {
namespace {

bool IsEngineKey(const std::string& k) {
  return k == "id" || k == "type" || k == "parallelism" || k == "input" || k == "inputs" || k == "key";
}

bool IsJsonNumber(const std::string& s) {
  if (s.empty()) return false;
  const char* p = s.c_str();
  if (*p == '-') ++p;
  if (!(*p >= '0' && *p <= '9')) return false;
  if (*p == '0' && p[1] >= '0' && p[1] <= '9') return false;  // no leading zeros
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return false;
  for (char c : s) {
    if (!(std::strchr("+-0123456789.eE", c) != nullptr)) return false;
  }
  return true;
}

}  // namespace

void AppendJsonString(const std::string& s, std::string* out) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

void AppendYamlAsJson(const YAML::Node& node, std::string* out) {
  switch (node.Type()) {
    case YAML::NodeType::Sequence: {
      out->push_back('[');
      bool first = true;
      for (const auto& item : node) {
        if (!first) out->push_back(',');
        first = false;
        AppendYamlAsJson(item, out);
      }
      out->push_back(']');
      return;
    }
    case YAML::NodeType::Map: {
      out->push_back('{');
      bool first = true;
      for (const auto& kv : node) {
        if (!first) out->push_back(',');
        first = false;
        AppendJsonString(kv.first.Scalar(), out);
        out->push_back(':');
        AppendYamlAsJson(kv.second, out);
      }
      out->push_back('}');
      return;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (node.Tag() != "!") {  // a plain (unquoted) scalar
        if (s == "true" || s == "false" || s == "null") {
          out->append(s);
          return;
        }
        if (IsJsonNumber(s)) {
          out->append(s);
          return;
        }
      }
      AppendJsonString(s, out);
      return;
    }
    default:
      out->append("null");
      return;
  }
}

std::string OptionsJson(const YAML::Node& config) {
  std::string out = "{";
  bool first = true;
  if (config.IsMap()) {
    for (const auto& kv : config) {
      const std::string& k = kv.first.Scalar();
      if (IsEngineKey(k)) continue;
      if (!first) out.push_back(',');
      first = false;
      AppendJsonString(k, &out);
      out.push_back(':');
      AppendYamlAsJson(kv.second, &out);
    }
  }
  out.push_back('}');
  return out;
}

}  // namespace sluice::plugin
