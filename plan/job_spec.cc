#include "plan/job_spec.h"

#include <limits>
#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/error_text.h"
#include "common/key_groups.h"
#include "common/status.h"
#include "plan/expr.h"
#include "plan/option_parsing.h"

namespace sluice::plan {

absl::string_view PartitionName(Partition p) {
  switch (p) {
    case Partition::kForward: return "forward";
    case Partition::kHash: return "hash";
    case Partition::kRebalance: return "rebalance";
    case Partition::kBroadcast: return "broadcast";
  }
  return "?";
}

namespace {

absl::StatusOr<Partition> ParsePartition(const ErrorContext& ec, const YAML::Node& n) {
  if (!n.IsScalar()) return ec.At(n, "'partition' must be a string");
  const std::string& s = n.Scalar();
  if (s == "forward") return Partition::kForward;
  if (s == "hash") return Partition::kHash;
  if (s == "rebalance") return Partition::kRebalance;
  if (s == "broadcast") return Partition::kBroadcast;
  return ec.At(n, absl::StrCat("unknown partition '", s,
                               "' (expected forward, hash, rebalance or broadcast)"));
}

// The input as written: "op" or "op.side".
std::string InputText(const InputSpec& in) {
  return in.side_output.empty() ? in.from : absl::StrCat(in.from, ".", in.side_output);
}

absl::Status ParseInputs(const ErrorContext& ec, const YAML::Node& op, OperatorSpec* spec) {
  YAML::Node in = op["input"] ? op["input"] : op["inputs"];
  if (op["input"] && op["inputs"]) return ec.At(op, "give either 'input' or 'inputs', not both");
  if (!in) return absl::OkStatus();
  std::vector<YAML::Node> items;
  if (in.IsSequence()) {
    for (const auto& i : in) items.push_back(static_cast<const YAML::Node&>(i));
  } else {
    items.push_back(in);
  }
  for (const YAML::Node& item : items) {
    InputSpec is;
    is.line = item.Mark().line + 1;
    is.column = item.Mark().column + 1;
    if (item.IsScalar()) {
      is.from = item.Scalar();
    } else if (item.IsMap()) {
      for (const auto& kv : item) {
        std::string k = kv.first.Scalar();
        if (k != "from" && k != "partition" && k != "key") {
          return ec.At(kv.first, absl::StrCat("unknown key '", k,
                                              "' in input (expected from, partition, key)"));
        }
      }
      SLUICE_ASSIGN_OR_RETURN(is.from, GetString(ec, item, "from", true));
      if (item["partition"]) {
        SLUICE_ASSIGN_OR_RETURN(is.partition, ParsePartition(ec, item["partition"]));
        is.explicit_partition = true;
      }
      // Keys are compiled later, once the producer's schema is known.
      if (item["key"]) {
        if (is.partition != Partition::kHash) {
          return ec.At(item["key"], "'key' is only allowed with partition: hash");
        }
      } else if (is.partition == Partition::kHash) {
        return ec.At(item, "partition: hash needs a 'key'");
      }
    } else {
      return ec.At(item, "an input must be an operator id or {from, partition, key}");
    }
    // `op.name`: side output `name` of operator `op` (ids never contain dots).
    if (size_t dot = is.from.find('.'); dot != std::string::npos) {
      is.side_output = is.from.substr(dot + 1);
      is.from.resize(dot);
      if (!IsIdentifier(is.from) || !IsIdentifier(is.side_output)) {
        return ec.At(item.IsMap() ? item["from"] : item,
                     absl::StrCat("input '", is.from, ".", is.side_output,
                                  "' must be an operator id or '<operator id>.<side output>'"));
      }
    }
    spec->inputs.push_back(std::move(is));
  }
  return absl::OkStatus();
}

// The indices of the fields of `schema` that the components of `key` are, when each is a bare
// NOT NULL field; empty otherwise.
std::vector<int> KeyFields(const std::vector<KeySpec>& key, const Schema& schema) {
  std::vector<int> fields;
  for (const KeySpec& k : key) {
    absl::StatusOr<std::unique_ptr<Expr>> e = CompileExpr(k.expr, schema);
    if (!e.ok() || (*e)->FieldIndex() < 0 || (*e)->nullable()) return {};
    fields.push_back((*e)->FieldIndex());
  }
  return fields;
}

// Whether the records of key_by `key_by` are partitioned by its own key already
// (OperatorSpec::partitioned_by), so that a consumer of its parallelism can read them forward
// and still find every key's records in the subtask that a hash edge would bring them to.
bool PartitionedByOwnKey(const OperatorSpec& key_by) {
  const std::vector<int> key = KeyFields(key_by.key, key_by.output_schema);
  return !key.empty() && std::find(key_by.partitioned_by.begin(), key_by.partitioned_by.end(),
                                   key) != key_by.partitioned_by.end();
}

// The keys the records of input `in` are partitioned by, over the schema it carries.
std::vector<std::vector<int>> InputPartitioning(const std::vector<OperatorSpec>& ops,
                                                const InputSpec& in) {
  const OperatorSpec& producer = ops[in.from_index];
  if (in.partition == Partition::kHash) {
    std::vector<int> key = KeyFields(in.key, InputSchema(producer, in));
    if (key.empty()) return {};
    return {std::move(key)};
  }
  if (in.partition == Partition::kForward && in.side_output_index < 0) return producer.partitioned_by;
  return {};
}

// OperatorSpec::partitioned_by of `op`: its inputs' keys whose every field reaches its output
// as a copy (`origins`, its type's FieldOrigins()) in a NOT NULL field of the same type.
std::vector<std::vector<int>> OutputPartitioning(const std::vector<OperatorSpec>& ops,
                                                 const OperatorSpec& op,
                                                 const std::vector<FieldOrigin>& origins) {
  std::vector<std::vector<int>> keys;
  if (origins.size() != op.output_schema.size()) return keys;
  for (size_t i = 0; i < op.inputs.size(); ++i) {
    const Schema& in_schema = InputSchema(ops[op.inputs[i].from_index], op.inputs[i]);
    for (const std::vector<int>& in_key : InputPartitioning(ops, op.inputs[i])) {
      std::vector<int> out_key;
      for (int f : in_key) {
        for (size_t j = 0; j < origins.size(); ++j) {
          const Field& out = op.output_schema.field(j);
          if (origins[j] == FieldOrigin{static_cast<int>(i), f} && !out.nullable &&
              out.type == in_schema.field(f).type) {
            out_key.push_back(static_cast<int>(j));
            break;
          }
        }
      }
      if (out_key.size() == in_key.size() &&
          std::find(keys.begin(), keys.end(), out_key) == keys.end()) {
        keys.push_back(std::move(out_key));
      }
    }
  }
  return keys;
}

// The checks an operator's arity and keyedness imply: the inputs of a kMany operator share
// one schema; a keyed operator's input is partitioned by a key, which becomes `op.key`.
absl::Status CheckInputs(const ErrorContext& ec, const std::vector<OperatorSpec>& ops,
                         OperatorSpec& op) {
  if (op.arity == InputArity::kMany) {
    for (const InputSpec& in : op.inputs) {
      const Schema& s = InputSchema(ops[in.from_index], in);
      if (s != op.input_schema) {
        return ec.AtPos(in.line, in.column,
                        absl::StrCat(op.type, " inputs must have the same schema: '", in.from,
                                     "' has ", s.ToString(), ", '", op.inputs[0].from, "' has ",
                                     op.input_schema.ToString()));
      }
    }
  }
  if (!op.keyed) return absl::OkStatus();
  const InputSpec& in = op.inputs[0];
  const OperatorSpec& producer = ops[in.from_index];
  if (in.partition == Partition::kHash) {
    op.key = in.key;
  } else if (producer.keys_output && (op.parallelism == 1 || in.partition == Partition::kForward)) {
    // Forward from a key_by of equal parallelism keeps each key on one subtask only when
    // the key_by's own input is partitioned by the same key (as the planner makes it when it
    // is); require parallelism 1 or an explicit hash otherwise.
    if (op.parallelism != 1 && !PartitionedByOwnKey(producer)) {
      return ec.AtPos(in.line, in.column,
                      absl::StrCat(op.type, " '", op.id, "' reads from ", producer.type, " '",
                                   producer.id, "' with partition: ", PartitionName(in.partition),
                                   ", which splits keys across subtasks; use partition: hash"));
    }
    op.key = producer.key;
  } else if (producer.keys_output) {
    return ec.AtPos(in.line, in.column,
                    absl::StrCat(op.type, " '", op.id, "' reads from ", producer.type, " '",
                                 producer.id, "' with partition: ", PartitionName(in.partition),
                                 ", which splits keys across subtasks; use partition: hash"));
  } else {
    return ec.AtPos(op.line, op.column,
                    absl::StrCat(op.type, " '", op.id,
                                 "' needs a keyed input: put a key_by before it or read with "
                                 "partition: hash and a key"));
  }
  return absl::OkStatus();
}

absl::Status ParseCheckpointAndRestart(const ErrorContext& ec, const YAML::Node& root, JobSpec* job) {
  if (YAML::Node c = root["checkpoint"]) {
    SLUICE_RETURN_IF_ERROR(
        CheckKeys(ec, c, "checkpoint", {"interval", "timeout", "min_pause", "retain", "tolerable_failures",
                                     "mode", "aligned_timeout"}));
    if (!c["interval"]) {
      return ec.At(c, "checkpoint needs an 'interval' (at least 10ms; leave out the checkpoint "
                      "section to take no checkpoints)");
    }
    SLUICE_ASSIGN_OR_RETURN(job->checkpoint.interval_ms, GetDuration(ec, c, "interval", 0));
    SLUICE_ASSIGN_OR_RETURN(job->checkpoint.timeout_ms, GetDuration(ec, c, "timeout", 60000));
    SLUICE_ASSIGN_OR_RETURN(job->checkpoint.min_pause_ms, GetDuration(ec, c, "min_pause", 0));
    SLUICE_ASSIGN_OR_RETURN(int64_t retain, GetInt(ec, c, "retain", 3, 1, 1000));
    job->checkpoint.retain = static_cast<int>(retain);
    SLUICE_ASSIGN_OR_RETURN(int64_t tolerable, GetInt(ec, c, "tolerable_failures", 0, 0, 1000000));
    job->checkpoint.tolerable_failures = static_cast<int>(tolerable);
    if (c["mode"]) {
      SLUICE_ASSIGN_OR_RETURN(std::string mode, GetString(ec, c, "mode", false));
      if (mode == "aligned") {
        job->checkpoint.mode = CheckpointConfig::Mode::kAligned;
      } else if (mode == "unaligned") {
        job->checkpoint.mode = CheckpointConfig::Mode::kUnaligned;
      } else if (mode == "auto") {
        job->checkpoint.mode = CheckpointConfig::Mode::kAuto;
      } else {
        return ec.At(c["mode"], absl::StrCat("checkpoint mode must be aligned, unaligned or auto, got '",
                                             mode, "'"));
      }
    }
    SLUICE_ASSIGN_OR_RETURN(job->checkpoint.aligned_timeout_ms, GetDuration(ec, c, "aligned_timeout", 1000));
    if (c["aligned_timeout"] && job->checkpoint.mode != CheckpointConfig::Mode::kAuto) {
      return ec.At(c["aligned_timeout"],
                   "checkpoint aligned_timeout applies to mode: auto only (aligned never switches, "
                   "unaligned never aligns)");
    }
    if (job->checkpoint.interval_ms < kMinCheckpointIntervalMs) {
      return ec.At(c["interval"],
                   absl::StrCat("checkpoint interval must be at least ", kMinCheckpointIntervalMs,
                                "ms, got ", job->checkpoint.interval_ms,
                                "ms (leave out the checkpoint section to take no checkpoints)"));
    }
    if (job->checkpoint.timeout_ms <= 0) return ec.At(c["timeout"], "checkpoint timeout must be positive");
  }
  if (YAML::Node r = root["restart"]) {
    SLUICE_RETURN_IF_ERROR(CheckKeys(ec, r, "restart",
                                     {"strategy", "attempts", "delay", "initial_delay", "max_delay",
                                      "slot_wait_timeout"}));
    SLUICE_ASSIGN_OR_RETURN(std::string strategy, GetString(ec, r, "strategy", false));
    if (strategy.empty() || strategy == "fixed_delay") {
      job->restart.strategy = RestartConfig::Strategy::kFixedDelay;
    } else if (strategy == "exponential_backoff") {
      job->restart.strategy = RestartConfig::Strategy::kExponentialBackoff;
    } else if (strategy == "none") {
      job->restart.strategy = RestartConfig::Strategy::kNone;
    } else {
      return ec.At(r["strategy"], absl::StrCat("unknown restart strategy '", strategy,
                                               "' (expected fixed_delay, exponential_backoff or none)"));
    }
    SLUICE_ASSIGN_OR_RETURN(int64_t attempts, GetInt(ec, r, "attempts", 3, 0, 1000000));
    job->restart.attempts = static_cast<int>(attempts);
    SLUICE_ASSIGN_OR_RETURN(job->restart.delay_ms,
                            GetDuration(ec, r, r["initial_delay"] ? "initial_delay" : "delay", 1000));
    SLUICE_ASSIGN_OR_RETURN(job->restart.max_delay_ms, GetDuration(ec, r, "max_delay", 60000));
    SLUICE_ASSIGN_OR_RETURN(job->restart.slot_wait_timeout_ms,
                            GetDuration(ec, r, "slot_wait_timeout", job->restart.slot_wait_timeout_ms));
    if (job->restart.slot_wait_timeout_ms <= 0) {
      return ec.At(r["slot_wait_timeout"], "restart slot_wait_timeout must be positive");
    }
  }
  return absl::OkStatus();
}

// Length of the well-formed UTF-8 sequence that starts at text[i] (Unicode's table 3-7: no
// overlong forms, no surrogates, nothing above U+10FFFF), or 0 if there is none.
size_t Utf8SequenceLength(absl::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > text.size() || byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  return n;
}

}  // namespace

absl::Status CheckJobText(absl::string_view text, absl::string_view source_name) {
  ErrorContext ec(source_name);
  if (text.size() > kMaxJobFileBytes) {
    return ec.AtPos(0, 0, absl::StrCat("job file exceeds the limit of 1 MiB (", kMaxJobFileBytes,
                                       " bytes)"));
  }
  int line = 1;
  int column = 1;
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '\0') return ec.AtPos(line, column, "NUL byte: a job file must be text");
    const size_t n = Utf8SequenceLength(text, i);
    if (n == 0) {
      return ec.AtPos(line, column,
                      absl::StrFormat("invalid UTF-8 (byte 0x%02x): a job file must be UTF-8 text",
                                      static_cast<unsigned char>(text[i])));
    }
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    i += n;
  }
  return absl::OkStatus();
}

absl::Status CheckOptionKeys(const ErrorContext& ec, const YAML::Node& config,
                             const OperatorTraits& traits, const OperatorSpec& op) {
  if (traits.any_option_keys) return absl::OkStatus();
  const std::vector<std::string>& keys = traits.option_keys;
  for (const auto& kv : config) {
    const std::string k = kv.first.Scalar();
    if (k == "id" || k == "type" || k == "parallelism" || k == "input" || k == "inputs") continue;
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
      std::string expected = absl::StrJoin(keys, ", ");
      return ec.At(kv.first, absl::StrCat("unknown option '", k, "' for ", op.type, " operator '",
                                          op.id, "'",
                                          expected.empty() ? std::string(" (it takes none)")
                                                           : absl::StrCat(" (expected ", expected, ")")));
    }
  }
  return absl::OkStatus();
}

std::string OptionsYaml(const YAML::Node& config) {
  YAML::Node options(YAML::NodeType::Map);
  for (const auto& kv : config) {
    const std::string& k = kv.first.Scalar();
    if (k == "id" || k == "type" || k == "parallelism" || k == "input" || k == "inputs") continue;
    options.force_insert(kv.first, kv.second);
  }
  YAML::Emitter out;
  out << options;
  return out.c_str();
}

absl::StatusOr<int64_t> ParseDurationMs(absl::string_view text) {
  std::string t(absl::StripAsciiWhitespace(text));
  size_t i = 0;
  while (i < t.size() && (absl::ascii_isdigit(t[i]) || t[i] == '.')) ++i;
  double v;
  if (i == 0 || !absl::SimpleAtod(t.substr(0, i), &v) || v < 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad duration '", text, "' (use e.g. 500ms, 1s, 2m)"));
  }
  std::string unit = t.substr(i);
  double ms;
  if (unit.empty() || unit == "ms") ms = v;
  else if (unit == "s") ms = v * 1000;
  else if (unit == "m" || unit == "min") ms = v * 60000;
  else if (unit == "h") ms = v * 3600000;
  else return absl::InvalidArgumentError(absl::StrCat("bad duration unit '", unit, "' (ms, s, m or h)"));
  // 2^63 ms and more do not fit in int64 (converting them would be undefined behaviour).
  if (!(ms < 9223372036854775808.0)) {
    return absl::InvalidArgumentError(absl::StrCat("duration '", text, "' is too large: at most ",
                                                   std::numeric_limits<int64_t>::max(),
                                                   "ms (about 292 million years)"));
  }
  return static_cast<int64_t>(ms);
}

namespace {

absl::StatusOr<std::vector<PluginRef>> PluginsOf(const ErrorContext& ec, const YAML::Node& root) {
  std::vector<PluginRef> refs;
  YAML::Node list = root["plugins"];
  if (!list) return refs;
  if (!list.IsSequence()) return ec.At(list, "'plugins' must be a list of plugin file paths");
  for (const auto& item : list) {
    if (!item.IsScalar() || item.Scalar().empty()) {
      return ec.At(item, "a plugin must be the path of a shared library (e.g. /opt/plugins/libfoo.so)");
    }
    PluginRef ref;
    ref.path = item.Scalar();
    ref.line = item.Mark().line + 1;
    ref.column = item.Mark().column + 1;
    refs.push_back(std::move(ref));
  }
  return refs;
}

}  // namespace

absl::StatusOr<std::vector<PluginRef>> ReadJobPlugins(absl::string_view yaml_text,
                                                      absl::string_view source_name) {
  SLUICE_RETURN_IF_ERROR(CheckJobText(yaml_text, source_name));
  ErrorContext ec(source_name);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return ec.AtPos(e.mark.line + 1, e.mark.column + 1, absl::StrCat("invalid YAML: ", e.msg));
  }
  if (!root.IsMap()) return std::vector<PluginRef>();  // ParseJobSpec reports it
  return PluginsOf(ec, root);
}

absl::StatusOr<JobSpec> ParseJobSpec(absl::string_view yaml_text, absl::string_view source_name,
                                     const OperatorTypeCatalog& catalog,
                                     int parallelism_override) {
  SLUICE_RETURN_IF_ERROR(CheckJobText(yaml_text, source_name));
  ErrorContext ec(source_name);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return ec.AtPos(e.mark.line + 1, e.mark.column + 1, absl::StrCat("invalid YAML: ", e.msg));
  }
  if (!root.IsMap()) return ec.AtPos(1, 1, "a job must be a YAML mapping with 'operators'");

  JobSpec job;
  job.source_name = std::string(source_name);
  static const std::set<std::string> kJobKeys = {"name", "parallelism", "max_parallelism",
                                                 "buffer_timeout_ms", "operators", "checkpoint",
                                                 "restart", "watermark_interval", "plugins"};
  for (const auto& kv : root) {
    if (!kJobKeys.count(kv.first.Scalar())) {
      return ec.At(kv.first, absl::StrCat("unknown job key '", kv.first.Scalar(),
                                          "' (expected name, parallelism, max_parallelism, "
                                          "buffer_timeout_ms, watermark_interval, checkpoint, restart, "
                                          "plugins, operators)"));
    }
  }
  SLUICE_ASSIGN_OR_RETURN(job.name, GetString(ec, root, "name", false));
  if (job.name.empty()) job.name = "unnamed";
  SLUICE_ASSIGN_OR_RETURN(int64_t p, GetInt(ec, root, "parallelism", 1, 1, 1024));
  if (parallelism_override > 1024) {
    return ec.AtPos(0, 0, absl::StrCat("parallelism override must be between 1 and 1024, got ",
                                       parallelism_override));
  }
  job.parallelism = parallelism_override > 0 ? parallelism_override : static_cast<int>(p);
  SLUICE_ASSIGN_OR_RETURN(int64_t maxp, GetInt(ec, root, "max_parallelism", kDefaultMaxParallelism,
                                               1, kUpperMaxParallelism));
  job.max_parallelism = static_cast<int>(maxp);
  SLUICE_ASSIGN_OR_RETURN(job.buffer_timeout_ms, GetInt(ec, root, "buffer_timeout_ms", 10, 0, 60000));
  SLUICE_ASSIGN_OR_RETURN(job.watermark_interval_ms, GetDuration(ec, root, "watermark_interval", 200));
  if (job.watermark_interval_ms < 1 || job.watermark_interval_ms > 3600000) {
    return ec.At(root["watermark_interval"], "'watermark_interval' must be between 1ms and 1h");
  }

  SLUICE_RETURN_IF_ERROR(ParseCheckpointAndRestart(ec, root, &job));
  SLUICE_ASSIGN_OR_RETURN(job.plugins, PluginsOf(ec, root));

  YAML::Node ops = root["operators"];
  if (!ops) return ec.AtPos(1, 1, "a job needs 'operators'");
  if (!ops.IsSequence() || ops.size() == 0) return ec.At(ops, "'operators' must be a non-empty list");

  // Pass 1: identity, type, options, parallelism, inputs.
  std::vector<OperatorSpec> specs;
  std::vector<YAML::Node> configs;                 // per spec: its YAML mapping
  std::vector<const OperatorType*> types;          // per spec: its type
  std::map<std::string, int> by_id;
  for (const auto& node : ops) {
    if (!node.IsMap()) return ec.At(node, "an operator must be a mapping with 'id' and 'type'");
    OperatorSpec op;
    op.index = static_cast<int>(specs.size());
    op.line = node.Mark().line + 1;
    op.column = node.Mark().column + 1;
    SLUICE_ASSIGN_OR_RETURN(op.id, GetString(ec, node, "id", true));
    SLUICE_ASSIGN_OR_RETURN(op.type, GetString(ec, node, "type", true));
    if (!IsIdentifier(op.id)) {
      return ec.At(node["id"], absl::StrCat("operator id '", op.id,
                                            "' must be letters, digits and underscores"));
    }
    if (by_id.count(op.id)) return ec.At(node["id"], absl::StrCat("duplicate operator id '", op.id, "'"));
    const OperatorType* type = catalog.Find(op.type);
    if (type == nullptr) {
      return ec.At(node["type"], absl::StrCat("unknown operator type '", op.type,
                                              "' (known: ", catalog.KnownTypes(), ")"));
    }
    const OperatorTraits& traits = type->traits();
    op.arity = traits.inputs;
    op.has_output = traits.has_output;
    op.keyed = traits.keyed;
    op.keys_output = traits.keys_output;
    SLUICE_RETURN_IF_ERROR(CheckOptionKeys(ec, node, traits, op));
    SLUICE_ASSIGN_OR_RETURN(int64_t par, GetInt(ec, node, "parallelism", job.parallelism, 1, 1024));
    if (par > job.max_parallelism) {
      // The operator may inherit the job's parallelism and have no 'parallelism' key of its own.
      return ec.At(node["parallelism"] ? node["parallelism"] : node,
                   absl::StrCat("parallelism ", par, " exceeds max_parallelism ",
                                job.max_parallelism));
    }
    op.parallelism = static_cast<int>(par);
    SLUICE_RETURN_IF_ERROR(ParseInputs(ec, node, &op));
    // Default input: the previous operator in the list.
    if (op.inputs.empty() && type->min_inputs() > 0) {
      if (specs.empty() || specs.back().is_sink()) {
        return ec.At(node, absl::StrCat(op.type, " operator '", op.id,
                                        "' needs an 'input' (no previous operator to read from)"));
      }
      InputSpec is;
      is.from = specs.back().id;
      is.line = op.line;
      is.column = op.column;
      op.inputs.push_back(is);
    }
    if (static_cast<int>(op.inputs.size()) < type->min_inputs() ||
        static_cast<int>(op.inputs.size()) > type->max_inputs()) {
      return ec.At(node, type->max_inputs() == 0
                             ? absl::StrCat(op.type, " is a source and takes no input")
                             : absl::StrCat(op.type, " operator '", op.id, "' takes ",
                                            type->min_inputs() == type->max_inputs()
                                                ? absl::StrCat(type->min_inputs())
                                                : absl::StrCat(type->min_inputs(), " to ", type->max_inputs()),
                                            " input(s), got ", op.inputs.size()));
    }
    op.options_yaml = OptionsYaml(node);
    by_id[op.id] = op.index;
    specs.push_back(std::move(op));
    configs.push_back(static_cast<const YAML::Node&>(node));
    types.push_back(type);
  }

  // Pass 2: resolve references.
  for (auto& op : specs) {
    for (auto& in : op.inputs) {
      auto it = by_id.find(in.from);
      if (it == by_id.end()) {
        return ec.AtPos(in.line, in.column, absl::StrCat("operator '", op.id, "' reads from unknown operator '",
                                                         in.from, "'"));
      }
      in.from_index = it->second;
      if (in.from_index == op.index) {
        return ec.AtPos(in.line, in.column, absl::StrCat("operator '", op.id, "' reads from itself"));
      }
      if (specs[in.from_index].is_sink() && in.side_output.empty()) {
        return ec.AtPos(in.line, in.column, absl::StrCat("operator '", op.id, "' reads from sink '",
                                                         in.from, "', which has no output"));
      }
    }
  }

  // Pass 3: topological order (Kahn), reporting a cycle with its members.
  std::vector<int> indegree(specs.size());
  std::vector<std::vector<int>> consumers(specs.size());
  for (const auto& op : specs) {
    for (const auto& in : op.inputs) {
      indegree[op.index]++;
      consumers[in.from_index].push_back(op.index);
    }
  }
  std::vector<int> order;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (indegree[i] == 0) order.push_back(static_cast<int>(i));
  }
  for (size_t head = 0; head < order.size(); ++head) {
    for (int c : consumers[order[head]]) {
      if (--indegree[c] == 0) order.push_back(c);
    }
  }
  if (order.size() != specs.size()) {
    std::vector<std::string> members;
    int first = -1;
    for (size_t i = 0; i < specs.size(); ++i) {
      if (indegree[i] > 0) {
        members.push_back(specs[i].id);
        if (first < 0) first = static_cast<int>(i);
      }
    }
    return ec.AtPos(specs[first].line, specs[first].column,
                    absl::StrCat("the job graph has a cycle through operators ",
                                 absl::StrJoin(members, ", ")));
  }

  // Pass 4: schemas and options, in topological order.
  for (int idx : order) {
    OperatorSpec& op = specs[idx];
    for (auto& in : op.inputs) {
      if (in.side_output.empty()) continue;
      const OperatorSpec& producer = specs[in.from_index];
      for (size_t k = 0; k < producer.side_outputs.size(); ++k) {
        if (producer.side_outputs[k].name == in.side_output) in.side_output_index = static_cast<int>(k);
      }
      if (in.side_output_index < 0) {
        std::vector<std::string> names;
        for (const auto& so : producer.side_outputs) names.push_back(so.name);
        return ec.AtPos(in.line, in.column,
                        absl::StrCat("operator '", op.id, "' reads side output '", in.side_output,
                                     "' of '", producer.id, "', which has ",
                                     names.empty() ? std::string("no side outputs")
                                                   : absl::StrCat("only ", absl::StrJoin(names, ", "))));
      }
    }
    if (!op.inputs.empty()) op.input_schema = InputSchema(specs[op.inputs[0].from_index], op.inputs[0]);
    for (auto& in : op.inputs) {
      const OperatorSpec& producer = specs[in.from_index];
      if (!in.explicit_partition) {
        if (producer.keys_output && in.side_output_index < 0 && op.inputs.size() == 1 &&
            producer.parallelism == op.parallelism && PartitionedByOwnKey(producer)) {
          // Already partitioned by the key: no second exchange (Flink's planner likewise keeps
          // an existing hash distribution). Two-input operators keep their hash edges.
          in.partition = Partition::kForward;
        } else if (producer.keys_output && in.side_output_index < 0) {
          in.partition = Partition::kHash;
          in.key = producer.key;
        } else {
          in.partition = producer.parallelism == op.parallelism ? Partition::kForward
                                                                : Partition::kRebalance;
        }
      } else if (in.partition == Partition::kHash && in.key.empty()) {
        // Find the YAML node of this input again to compile its key with position.
        const YAML::Node& config = configs[idx];
        YAML::Node inputs = config["input"] ? config["input"] : config["inputs"];
        YAML::Node item = inputs.IsSequence() ? YAML::Node() : inputs;
        if (inputs.IsSequence()) {
          for (const auto& i : inputs) {
            if (i.IsMap() && i["from"] && i["from"].Scalar() == InputText(in)) {
              item = static_cast<const YAML::Node&>(i);
            }
          }
        }
        SLUICE_ASSIGN_OR_RETURN(in.key, ParseKey(ec, item["key"], InputSchema(producer, in)));
      }
      if (in.partition == Partition::kForward && producer.parallelism != op.parallelism) {
        return ec.AtPos(in.line, in.column,
                        absl::StrCat("forward edge from '", producer.id, "' (parallelism ",
                                     producer.parallelism, ") to '", op.id, "' (parallelism ",
                                     op.parallelism, ") needs equal parallelism; use rebalance or hash"));
      }
    }
    SLUICE_RETURN_IF_ERROR(CheckInputs(ec, specs, op));
    std::vector<const OperatorSpec*> producers;
    for (const auto& in : op.inputs) producers.push_back(&specs[in.from_index]);
    ParseContext ctx(&ec, &job, &op, std::move(producers), &job.warnings, &catalog);
    SLUICE_ASSIGN_OR_RETURN(op.options, types[idx]->ParseOptions(configs[idx], ctx));
    op.output_schema = types[idx]->InferSchema(*op.options, ctx);
    op.side_outputs = types[idx]->SideOutputs(*op.options, ctx);
    if (op.keys_output) op.key = types[idx]->OutputKey(*op.options);
    op.partitioned_by = OutputPartitioning(specs, op, types[idx]->FieldOrigins(*op.options, ctx));
  }

  // Keep operators in topological order; re-number indices and references.
  std::vector<int> new_index(specs.size());
  for (size_t i = 0; i < order.size(); ++i) new_index[order[i]] = static_cast<int>(i);
  for (int idx : order) {
    OperatorSpec op = specs[idx];
    op.index = new_index[idx];
    for (auto& in : op.inputs) in.from_index = new_index[in.from_index];
    job.operators.push_back(std::move(op));
  }
  bool has_sink = false;
  for (const auto& op : job.operators) has_sink |= op.is_sink();
  for (const auto& producer : job.operators) {
    for (size_t k = 0; k < producer.side_outputs.size(); ++k) {
      bool read = false;
      for (const auto& op : job.operators) {
        for (const auto& in : op.inputs) {
          read |= in.from_index == producer.index && in.side_output_index == static_cast<int>(k);
        }
      }
      if (!read) {
        job.warnings.push_back(absl::StrCat("side output '", producer.id, ".",
                                            producer.side_outputs[k].name,
                                            "' is read by no operator: its records are dropped"));
      }
    }
  }
  if (!has_sink) return ec.AtPos(1, 1, "the job has no sink (file, kafka_sink, print or blackhole)");
  return job;
}

}  // namespace sluice::plan
