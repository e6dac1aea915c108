#include "connectors/kafka_sink_options.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "plan/job_spec.h"
#include "plan/option_parsing.h"

namespace sluice::connectors {
namespace {

using Options = KafkaSinkOptions;

absl::StatusOr<Options> Parse(const YAML::Node& c, const plan::ParseContext& ctx) {
  const plan::ErrorContext& ec = ctx.errors();
  const Schema& input = ctx.op().input_schema;
  Options o;
  SLUICE_ASSIGN_OR_RETURN(o.bootstrap, plan::GetString(ec, c, "bootstrap", true));
  SLUICE_ASSIGN_OR_RETURN(o.topic, plan::GetString(ec, c, "topic", true));
  SLUICE_ASSIGN_OR_RETURN(std::string format, plan::GetString(ec, c, "format", false));
  if (format.empty() || format == "json") {
    o.format = Options::Format::kJson;
  } else if (format == "csv") {
    o.format = Options::Format::kCsv;
  } else if (format == "raw") {
    o.format = Options::Format::kRaw;
    o.value_field = input.IndexOf("value");
    if (o.value_field < 0 || input.field(o.value_field).type != FieldType::kString) {
      return ctx.At(c["format"], absl::StrCat("format raw writes the string field 'value', which input ",
                                              input.ToString(), " does not have"));
    }
  } else {
    return ctx.At(c["format"], absl::StrCat("unknown format '", format, "' (expected json, csv or raw)"));
  }
  if (YAML::Node k = c["key"]) {
    if (!k.IsSequence()) return ctx.At(k, "'key' must be a list of field names");
    for (const auto& f : k) {
      const int index = f.IsScalar() ? input.IndexOf(f.Scalar()) : -1;
      if (index < 0) {
        return ctx.At(f, absl::StrCat("key field '", f.IsScalar() ? f.Scalar() : "?",
                                      "' is not in the input ", input.ToString()));
      }
      o.key_fields.push_back(index);
    }
  }
  SLUICE_ASSIGN_OR_RETURN(std::string guarantee, plan::GetString(ec, c, "guarantee", false));
  if (guarantee == "none") {
    o.guarantee = Options::Guarantee::kNone;
  } else if (guarantee.empty() || guarantee == "at_least_once") {
    o.guarantee = Options::Guarantee::kAtLeastOnce;
  } else if (guarantee == "exactly_once") {
    o.guarantee = Options::Guarantee::kExactlyOnce;
  } else {
    return ctx.At(c["guarantee"], absl::StrCat("unknown guarantee '", guarantee,
                                               "' (expected none, at_least_once or exactly_once)"));
  }
  SLUICE_ASSIGN_OR_RETURN(o.transaction_timeout_ms, plan::GetDuration(ec, c, "transaction_timeout", 900000));
  SLUICE_ASSIGN_OR_RETURN(o.flush_timeout_ms, plan::GetDuration(ec, c, "flush_timeout", 60000));
  if (o.transaction_timeout_ms <= 0) return ctx.At(c["transaction_timeout"], "'transaction_timeout' must be positive");
  if (o.flush_timeout_ms <= 0) return ctx.At(c["flush_timeout"], "'flush_timeout' must be positive");
  SLUICE_ASSIGN_OR_RETURN(int64_t pool, plan::GetInt(ec, c, "producer_pool_size", 5, 2, 64));
  o.producer_pool_size = static_cast<int>(pool);
  SLUICE_ASSIGN_OR_RETURN(o.max_transaction_bytes,
                          plan::GetInt(ec, c, "max_transaction_bytes", 32 << 20, 1, 1 << 30));
  // Pending transactions travel in checkpoint acknowledgements (gRPC messages of at most
  // 256 MiB, with room left for the rest of the state).
  if (o.max_transaction_bytes * pool > (192 << 20)) {
    return ctx.At(c["max_transaction_bytes"] ? c["max_transaction_bytes"] : c["producer_pool_size"],
                  absl::StrCat("max_transaction_bytes x producer_pool_size (", o.max_transaction_bytes,
                               " x ", pool,
                               ") must stay within 192 MiB: pending transactions travel in the checkpoint"));
  }
  if (YAML::Node prefix = c["transactional_id_prefix"]) {
    const std::string& v = prefix.Scalar();
    bool ok = !v.empty();
    for (char ch : v) ok &= absl::ascii_isalnum(ch) || ch == '.' || ch == '_' || ch == '-';
    if (!ok) return ctx.At(prefix, "'transactional_id_prefix' may only hold letters, digits, '.', '_' and '-'");
    o.transactional_id_prefix = v;
  }
  SLUICE_ASSIGN_OR_RETURN(o.properties, plan::ParseProperties(ec, c));
  SLUICE_ASSIGN_OR_RETURN(o.transaction_log, plan::GetString(ec, c, "transaction_log", false));

  if (o.guarantee == Options::Guarantee::kExactlyOnce) {
    const plan::JobSpec& job = ctx.job();
    if (!job.checkpoint.enabled()) {
      return ctx.At(c["guarantee"],
                    "guarantee exactly_once commits a Kafka transaction per checkpoint: enable checkpoints "
                    "(checkpoint: {interval: ...})");
    }
    // Flink's known trap: a transaction that outlives transaction.timeout.ms is aborted by the
    // broker, and its records are silently lost.
    int64_t budget = 0;
    if (job.restart.strategy != plan::RestartConfig::Strategy::kNone) {
      for (int i = 1; i <= job.restart.attempts && i <= 10000; ++i) budget += job.restart.DelayFor(i);
    }
    if (o.transaction_timeout_ms < job.checkpoint.interval_ms + budget) {
      ctx.Warn(absl::StrCat("operator '", ctx.op().id, "': transaction_timeout ", o.transaction_timeout_ms,
                            " ms is shorter than the checkpoint interval (", job.checkpoint.interval_ms,
                            " ms) plus the restart budget (", budget,
                            " ms): a transaction still open when the broker's timeout hits is aborted and its "
                            "records are lost"));
    }
  }
  return o;
}

Schema Infer(const Options&, const plan::ParseContext&) { return Schema(); }

}  // namespace

std::unique_ptr<plan::OperatorType> MakeKafkaSinkType() {
  plan::OperatorTraits t;
  t.name = "kafka_sink";
  t.inputs = plan::InputArity::kMany;
  t.has_output = false;
  t.option_keys = {"bootstrap", "topic", "format", "key", "guarantee", "transactional_id_prefix",
                   "transaction_timeout", "producer_pool_size", "flush_timeout", "properties",
                   "transaction_log", "max_transaction_bytes"};
  return std::make_unique<plan::TypedOperatorType<Options>>(std::move(t), &Parse, &Infer);
}

}  // namespace sluice::connectors
