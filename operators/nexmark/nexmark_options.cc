#include "operators/nexmark/nexmark_options.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace sluice::ops {

const std::vector<Field>& NexmarkFields(nexmark::EventKind kind) {
  static const auto* person = new std::vector<Field>{
      {"id", FieldType::kInt64},           {"name", FieldType::kString},
      {"emailAddress", FieldType::kString}, {"creditCard", FieldType::kString},
      {"city", FieldType::kString},         {"state", FieldType::kString},
      {"dateTime", FieldType::kTimestamp},  {"extra", FieldType::kString}};
  static const auto* auction = new std::vector<Field>{
      {"id", FieldType::kInt64},          {"itemName", FieldType::kString},
      {"description", FieldType::kString}, {"initialBid", FieldType::kInt64},
      {"reserve", FieldType::kInt64},      {"dateTime", FieldType::kTimestamp},
      {"expires", FieldType::kTimestamp},  {"seller", FieldType::kInt64},
      {"category", FieldType::kInt64},     {"extra", FieldType::kString}};
  static const auto* bid = new std::vector<Field>{
      {"auction", FieldType::kInt64},     {"bidder", FieldType::kInt64},
      {"price", FieldType::kInt64},       {"channel", FieldType::kString},
      {"url", FieldType::kString},        {"dateTime", FieldType::kTimestamp},
      {"extra", FieldType::kString}};
  switch (kind) {
    case nexmark::EventKind::kPerson: return *person;
    case nexmark::EventKind::kAuction: return *auction;
    case nexmark::EventKind::kBid: break;
  }
  return *bid;
}

namespace {

absl::StatusOr<NexmarkOptions> Parse(const YAML::Node& c, const plan::ParseContext& ctx) {
  const plan::ErrorContext& ec = ctx.errors();
  NexmarkOptions o;
  SLUICE_ASSIGN_OR_RETURN(std::string emit, plan::GetString(ec, c, "emit", true));
  if (emit == "bid") {
    o.emit = nexmark::EventKind::kBid;
  } else if (emit == "auction") {
    o.emit = nexmark::EventKind::kAuction;
  } else if (emit == "person") {
    o.emit = nexmark::EventKind::kPerson;
  } else {
    return ctx.At(c["emit"], absl::StrCat("'emit' must be bid, auction or person, not '", emit, "'"));
  }
  SLUICE_ASSIGN_OR_RETURN(o.events, plan::GetInt(ec, c, "events", -1, 0, INT64_MAX));
  SLUICE_ASSIGN_OR_RETURN(o.rate, plan::GetDouble(ec, c, "rate", 0, 0));
  SLUICE_ASSIGN_OR_RETURN(o.event_rate, plan::GetDouble(ec, c, "event_rate", 10'000'000, 0));
  if (o.event_rate <= 0) return ctx.At(c["event_rate"], "'event_rate' must be positive");
  SLUICE_ASSIGN_OR_RETURN(o.max_out_of_orderness_ms,
                          plan::GetDuration(ec, c, "max_out_of_orderness", 4000));
  const std::vector<Field>& all = NexmarkFields(o.emit);
  YAML::Node fields = c["fields"];
  if (!fields) {
    for (size_t i = 0; i < all.size(); ++i) o.fields.push_back(static_cast<int>(i));
  } else {
    if (!fields.IsSequence() || fields.size() == 0) {
      return ctx.At(fields, "'fields' must be a non-empty list of field names");
    }
    for (const auto& f : fields) {
      if (!f.IsScalar()) return ctx.At(f, "a nexmark field must be a name");
      const std::string name = f.Scalar();
      int index = -1;
      for (size_t i = 0; i < all.size(); ++i) {
        if (all[i].name == name) index = static_cast<int>(i);
      }
      if (index < 0) {
        std::vector<std::string> names;
        for (const Field& a : all) names.push_back(a.name);
        return ctx.At(f, absl::StrCat("no field '", name, "' in a nexmark ", emit, " (",
                                      absl::StrJoin(names, ", "), ")"));
      }
      if (o.field_mask & (1u << index)) return ctx.At(f, absl::StrCat("duplicate field '", name, "'"));
      o.fields.push_back(index);
      o.field_mask |= 1u << index;
    }
  }
  std::vector<Field> out;
  for (int i : o.fields) {
    out.push_back(all[i]);
    o.field_mask |= 1u << i;
  }
  o.schema = Schema(std::move(out));
  return o;
}

Schema Infer(const NexmarkOptions& o, const plan::ParseContext&) { return o.schema; }

}  // namespace

std::unique_ptr<plan::OperatorType> MakeNexmarkType() {
  plan::OperatorTraits t;
  t.name = "nexmark";
  t.inputs = plan::InputArity::kSource;
  t.option_keys = {"emit", "events", "rate", "fields", "event_rate", "max_out_of_orderness"};
  return std::make_unique<plan::TypedOperatorType<NexmarkOptions>>(std::move(t), &Parse, &Infer);
}

}  // namespace sluice::ops
