#include "operators/top_n_options.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "plan/expr.h"
#include "plan/job_spec.h"
#include "plan/option_parsing.h"

namespace sluice::ops {
namespace {

// More than this many rows per group would make every record rewrite a large list.
constexpr int64_t kMaxN = 10000;

// n, order_by and order, shared by top_n and local_top_n.
template <typename Options>
absl::Status ParseRanking(const YAML::Node& c, const plan::ParseContext& ctx, Options* o) {
  const plan::ErrorContext& ec = ctx.errors();
  const Schema& in = ctx.op().input_schema;
  if (!c["n"]) return ctx.At(c, absl::StrCat(ctx.op().type, " needs 'n': how many rows per group"));
  SLUICE_ASSIGN_OR_RETURN(o->n, plan::GetInt(ec, c, "n", 1, 1, kMaxN));
  SLUICE_ASSIGN_OR_RETURN(o->order_by, plan::GetString(ec, c, "order_by", true));
  SLUICE_ASSIGN_OR_RETURN(auto e, plan::CompileAt(ec, c["order_by"], o->order_by, in));
  o->order_type = e->type();
  SLUICE_ASSIGN_OR_RETURN(std::string order, plan::GetString(ec, c, "order", false));
  if (!order.empty() && order != "desc" && order != "asc") {
    return ctx.At(c["order"], "'order' must be 'desc' (largest first, the default) or 'asc'");
  }
  o->descending = order != "asc";
  o->window_end = in.IndexOf("window_end");
  if (o->window_end >= 0 && in.field(o->window_end).type != FieldType::kTimestamp) o->window_end = -1;
  return absl::OkStatus();
}

absl::StatusOr<TopNOptions> Parse(const YAML::Node& c, const plan::ParseContext& ctx) {
  const Schema& in = ctx.op().input_schema;
  TopNOptions o;
  SLUICE_RETURN_IF_ERROR(ParseRanking(c, ctx, &o));
  std::vector<Field> out = in.fields();
  if (in.IndexOf("rank") >= 0) {
    return ctx.AtPos(
        ctx.op().line, ctx.op().column,
        "top_n adds a 'rank' field, but its input has one already (rename it with a map)");
  }
  out.push_back({"rank", FieldType::kInt64});
  o.schema = Schema(std::move(out));
  return o;
}

absl::StatusOr<LocalTopNOptions> ParseLocal(const YAML::Node& c, const plan::ParseContext& ctx) {
  LocalTopNOptions o;
  SLUICE_RETURN_IF_ERROR(ParseRanking(c, ctx, &o));
  if (o.window_end < 0) {
    return ctx.AtPos(ctx.op().line, ctx.op().column,
                     "local_top_n needs windowed input: a timestamp field 'window_end' (it holds "
                     "a window's rows until the watermark passes its end)");
  }
  if (!c["key"]) return ctx.At(c, "local_top_n needs 'key': the key of the key_by that follows");
  SLUICE_ASSIGN_OR_RETURN(o.key, plan::ParseKey(ctx.errors(), c["key"], ctx.op().input_schema));
  return o;
}

Schema Infer(const TopNOptions& o, const plan::ParseContext&) { return o.schema; }

Schema InferLocal(const LocalTopNOptions&, const plan::ParseContext& ctx) {
  return ctx.op().input_schema;
}

}  // namespace

std::unique_ptr<plan::OperatorType> MakeTopNType() {
  plan::OperatorTraits t;
  t.name = "top_n";
  t.keyed = true;
  t.option_keys = {"n", "order_by", "order"};
  return std::make_unique<plan::TypedOperatorType<TopNOptions>>(std::move(t), &Parse, &Infer);
}

std::unique_ptr<plan::OperatorType> MakeLocalTopNType() {
  plan::OperatorTraits t;
  t.name = "local_top_n";
  t.option_keys = {"key", "n", "order_by", "order"};
  return std::make_unique<plan::TypedOperatorType<LocalTopNOptions>>(std::move(t), &ParseLocal,
                                                                     &InferLocal);
}

}  // namespace sluice::ops
