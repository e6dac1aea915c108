#include "operators/join_options.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/status.h"
#include "plan/expr.h"
#include "plan/job_spec.h"
#include "plan/option_parsing.h"

namespace sluice::ops {
namespace {

using Kind = JoinSides::Kind;

constexpr const char* kSideName[2] = {"left", "right"};
// Bounds and durations stay far from int64 overflow when added to timestamps.
constexpr int64_t kMaxBoundMs = int64_t{1} << 52;

// The key input `i` is partitioned by (a key_by before it, or `partition: hash` and `key`).
absl::StatusOr<std::vector<plan::KeySpec>> InputKey(const plan::ParseContext& ctx, int i) {
  const plan::OperatorSpec& op = ctx.op();
  const plan::InputSpec& in = op.inputs[i];
  if (in.partition == plan::Partition::kHash && !in.key.empty()) return in.key;
  const plan::OperatorSpec& producer = ctx.producer(i);
  if (producer.keys_output && op.parallelism == 1) return producer.key;
  return ctx.AtPos(in.line, in.column,
                   absl::StrCat(op.type, " '", op.id, "' needs both inputs keyed: read input ", i,
                                " ('", in.from, "') after a key_by or with partition: hash and a key"));
}

// Parses `kind` (those of `allowed`), the inputs' keys, time fields (when `timed`) and the
// output schema into `*sides`.
absl::Status ParseSides(const YAML::Node& c, const plan::ParseContext& ctx, bool timed,
                        const std::vector<Kind>& allowed, JoinSides* sides) {
  const plan::ErrorContext& ec = ctx.errors();
  const plan::OperatorSpec& op = ctx.op();
  for (int i = 0; i < 2; ++i) {
    sides->input[i] = ctx.producer(i).output_schema;
    SLUICE_ASSIGN_OR_RETURN(sides->key[i], InputKey(ctx, i));
  }
  // Keys: equal arity and types, so that equal keys hash alike on both edges.
  if (sides->key[0].size() != sides->key[1].size()) {
    return ctx.AtPos(op.line, op.column,
                     absl::StrCat(op.type, " '", op.id, "': the left input is keyed by ",
                                  sides->key[0].size(), " field(s), the right by ",
                                  sides->key[1].size()));
  }
  for (size_t k = 0; k < sides->key[0].size(); ++k) {
    FieldType type[2];
    for (int i = 0; i < 2; ++i) {
      auto e = plan::CompileExpr(sides->key[i][k].expr, sides->input[i]);
      if (!e.ok()) return ctx.AtPos(op.line, op.column, e.status().message());
      type[i] = (*e)->type();
      if ((*e)->nullable()) {  // a null key would be routed by an unspecified value
        return ctx.AtPos(op.line, op.column,
                         absl::StrCat(op.type, " '", op.id, "': the ", kSideName[i], " key '",
                                      sides->key[i][k].expr,
                                      "' can be null; join keys must not be (use coalesce())"));
      }
    }
    if (type[0] != type[1]) {
      return ctx.AtPos(op.line, op.column,
                       absl::StrCat(op.type, " '", op.id, "': key component ", k + 1, " is ",
                                    FieldTypeName(type[0]), " on the left ('",
                                    sides->key[0][k].expr, "') but ", FieldTypeName(type[1]),
                                    " on the right ('", sides->key[1][k].expr,
                                    "'); keys must have the same types"));
    }
  }

  // Kind.
  const std::string kind = c["kind"] ? c["kind"].Scalar() : "inner";
  const std::pair<const char*, Kind> kinds[] = {
      {"inner", Kind::kInner}, {"left", Kind::kLeft}, {"right", Kind::kRight}, {"full", Kind::kFull}};
  bool found = false;
  std::vector<std::string> names;
  for (const auto& [name, k] : kinds) {
    bool ok = false;
    for (Kind a : allowed) ok |= a == k;
    if (!ok) continue;
    names.push_back(name);
    if (kind == name) {
      sides->kind = k;
      found = true;
    }
  }
  if (!found) {
    return ctx.At(c["kind"], absl::StrCat("'kind' of ", op.type, " must be ",
                                          absl::StrJoin(names, ", "), "; got '", kind, "'"));
  }

  // Time fields.
  if (timed) {
    for (int i = 0; i < 2; ++i) {
      const std::string key = absl::StrCat(kSideName[i], "_time");
      YAML::Node node = c[key] ? c[key] : c["time"];
      if (!node) {
        return ctx.At(c, absl::StrCat(op.type, " needs the event-time field of each input: "
                                      "'time: ts' (both) or 'left_time' and 'right_time'"));
      }
      const std::string name = node.Scalar();
      const int index = sides->input[i].IndexOf(name);
      if (index < 0) {
        return ctx.At(node, absl::StrCat("the ", kSideName[i], " input has no field '", name,
                                         "' (it has ", sides->input[i].ToString(), ")"));
      }
      const Field& f = sides->input[i].field(index);
      if (!IsIntegral(f.type) || f.nullable) {
        return ctx.At(node, absl::StrCat("event-time field '", name, "' of the ", kSideName[i],
                                         " input must be a NOT NULL timestamp or int64; it is ",
                                         FieldTypeName(f.type), f.nullable ? " null" : ""));
      }
      sides->time_field[i] = index;
    }
  }

  // Output schema.
  std::string as[2];
  for (int i = 0; i < 2; ++i) {
    const std::string key = absl::StrCat(kSideName[i], "_as");
    SLUICE_ASSIGN_OR_RETURN(as[i], plan::GetString(ec, c, key.c_str(), false));
    if (c[key] && !plan::IsIdentifier(as[i])) {
      return ctx.At(c[key], absl::StrCat("'", key, "' must be a name (letters, digits, _)"));
    }
  }
  std::vector<Field> out;
  std::set<std::string> seen;
  for (int i = 0; i < 2; ++i) {
    const Schema& other = sides->input[1 - i];
    for (const Field& f : sides->input[i].fields()) {
      Field o = f;
      if (!as[i].empty()) {
        o.name = absl::StrCat(as[i], ".", f.name);
      } else if (other.IndexOf(f.name) >= 0) {
        o.name = absl::StrCat(kSideName[i], ".", f.name);
      }
      o.nullable = f.nullable || sides->pads(i);
      if (!seen.insert(o.name).second) {
        return ctx.AtPos(op.line, op.column,
                         absl::StrCat(op.type, " '", op.id, "': output field '", o.name,
                                      "' would appear twice; name the sides with left_as/right_as"));
      }
      out.push_back(std::move(o));
    }
  }
  sides->output = Schema(std::move(out));
  return absl::OkStatus();
}

// A signed duration ("-5s", "2m", "0").
absl::StatusOr<int64_t> GetSignedDuration(const plan::ParseContext& ctx, const YAML::Node& c,
                                          const char* key) {
  YAML::Node n = c[key];
  if (!n || !n.IsScalar()) {
    return ctx.At(n ? n : c, absl::StrCat("interval_join needs '", key,
                                          "': a duration like -5s, 0 or 10s"));
  }
  absl::string_view text = n.Scalar();
  const bool negative = absl::ConsumePrefix(&text, "-");
  auto d = plan::ParseDurationMs(text);
  if (!d.ok()) return ctx.At(n, absl::StrCat("'", key, "': ", d.status().message()));
  if (*d > kMaxBoundMs) return ctx.At(n, absl::StrCat("'", key, "' is too large"));
  return negative ? -*d : *d;
}

// `unique: left|right` (absent: -1).
absl::StatusOr<int> GetUniqueSide(const plan::ParseContext& ctx, const YAML::Node& c) {
  YAML::Node n = c["unique"];
  if (!n) return -1;
  const std::string side = n.IsScalar() ? n.Scalar() : "";
  for (int i = 0; i < 2; ++i) {
    if (side == kSideName[i]) return i;
  }
  return ctx.At(n, absl::StrCat("'unique' names the input with at most one record per key: left "
                                "or right; got ",
                                n.IsScalar()     ? absl::StrCat("'", side, "'")
                                : n.IsSequence() ? "a list"
                                : n.IsMap()      ? "a map"
                                                 : "nothing"));
}

absl::StatusOr<IntervalJoinOptions> ParseInterval(const YAML::Node& c, const plan::ParseContext& ctx) {
  IntervalJoinOptions o;
  SLUICE_RETURN_IF_ERROR(ParseSides(c, ctx, /*timed=*/true, {Kind::kInner}, &o.sides));
  SLUICE_ASSIGN_OR_RETURN(o.lower_ms, GetSignedDuration(ctx, c, "lower"));
  SLUICE_ASSIGN_OR_RETURN(o.upper_ms, GetSignedDuration(ctx, c, "upper"));
  SLUICE_ASSIGN_OR_RETURN(bool lower_exclusive, plan::GetBool(ctx.errors(), c, "lower_exclusive", false));
  SLUICE_ASSIGN_OR_RETURN(bool upper_exclusive, plan::GetBool(ctx.errors(), c, "upper_exclusive", false));
  if (lower_exclusive) ++o.lower_ms;  // as Flink: strict bounds are the next millisecond
  if (upper_exclusive) --o.upper_ms;
  SLUICE_ASSIGN_OR_RETURN(o.unique, GetUniqueSide(ctx, c));
  if (o.lower_ms > o.upper_ms) {
    return ctx.At(c["lower"], absl::StrCat("interval_join: the interval [lower, upper] is empty (",
                                           o.lower_ms, " ms > ", o.upper_ms,
                                           " ms once exclusive bounds are applied)"));
  }
  return o;
}

absl::StatusOr<RegularJoinOptions> ParseRegular(const YAML::Node& c, const plan::ParseContext& ctx) {
  RegularJoinOptions o;
  SLUICE_RETURN_IF_ERROR(ParseSides(c, ctx, /*timed=*/false, {Kind::kInner, Kind::kLeft}, &o.sides));
  SLUICE_ASSIGN_OR_RETURN(o.ttl_ms, plan::GetDuration(ctx.errors(), c, "ttl", 0));
  if (o.ttl_ms > kMaxBoundMs) return ctx.At(c["ttl"], "'ttl' is too large");
  SLUICE_ASSIGN_OR_RETURN(o.unique, GetUniqueSide(ctx, c));
  if (o.sides.kind == Kind::kLeft && o.ttl_ms <= 0) {
    return ctx.At(c["ttl"] ? c["ttl"] : c,
                  "join with kind: left needs a 'ttl': a left row without a match is emitted "
                  "(padded with nulls) when its ttl expires");
  }
  return o;
}

absl::StatusOr<WindowJoinOptions> ParseWindow(const YAML::Node& c, const plan::ParseContext& ctx) {
  WindowJoinOptions o;
  SLUICE_RETURN_IF_ERROR(ParseSides(c, ctx, /*timed=*/true,
                                    {Kind::kInner, Kind::kLeft, Kind::kRight, Kind::kFull}, &o.sides));
  SLUICE_ASSIGN_OR_RETURN(o.window, ParseWindowSpec(ctx.errors(), c));
  if (o.window.merging()) {
    return ctx.At(c["session"], "window_join takes tumble or hop windows, not session windows");
  }
  std::vector<Field> out = o.sides.output.fields();
  for (const char* name : {"window_start", "window_end"}) {
    if (o.sides.output.IndexOf(name) >= 0) {
      return ctx.AtPos(ctx.op().line, ctx.op().column,
                       absl::StrCat("window_join adds a field '", name,
                                    "', which an input has already; rename it or use left_as/right_as"));
    }
    out.push_back({name, FieldType::kTimestamp});
  }
  o.sides.output = Schema(std::move(out));
  return o;
}

template <typename Options>
Schema Infer(const Options& o, const plan::ParseContext&) {
  return o.sides.output;
}

plan::OperatorTraits JoinTraits(const char* name, std::vector<std::string> keys) {
  plan::OperatorTraits t;
  t.name = name;
  t.inputs = plan::InputArity::kTwo;
  t.keyed = true;
  t.option_keys = std::move(keys);
  for (const char* k : {"kind", "left_as", "right_as"}) t.option_keys.push_back(k);
  return t;
}

}  // namespace

std::unique_ptr<plan::OperatorType> MakeIntervalJoinType() {
  return std::make_unique<plan::TypedOperatorType<IntervalJoinOptions>>(
      JoinTraits("interval_join", {"lower", "upper", "lower_exclusive", "upper_exclusive", "time",
                                   "left_time", "right_time", "unique"}),
      &ParseInterval, &Infer<IntervalJoinOptions>);
}

std::unique_ptr<plan::OperatorType> MakeRegularJoinType() {
  return std::make_unique<plan::TypedOperatorType<RegularJoinOptions>>(
      JoinTraits("join", {"ttl", "unique"}), &ParseRegular, &Infer<RegularJoinOptions>);
}

std::unique_ptr<plan::OperatorType> MakeWindowJoinType() {
  std::vector<std::string> keys = {"time", "left_time", "right_time"};
  for (const char* k : kWindowOptionKeys) keys.push_back(k);
  return std::make_unique<plan::TypedOperatorType<WindowJoinOptions>>(
      JoinTraits("window_join", std::move(keys)), &ParseWindow, &Infer<WindowJoinOptions>);
}

}  // namespace sluice::ops
