#include "operators/join_base.h"

#include "absl/strings/str_cat.h"
#include "common/key_groups.h"
#include "common/record_codec.h"
#include "common/state_format.h"
#include "common/status.h"
#include "operators/key_hasher.h"

namespace sluice::ops {

absl::Status JoinOperatorBase::OpenJoin(const OperatorContext& ctx, Output* output,
                                        const JoinSides& sides) {
  SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
  if (ctx.keyed_state == nullptr || ctx.timers == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(ctx.spec->type, " needs a keyed state backend and timers"));
  }
  sides_ = &sides;
  state_ = ctx.keyed_state;
  timers_ = ctx.timers;
  std::vector<Field> key_fields;
  for (int side = 0; side < 2; ++side) {
    for (const plan::KeySpec& k : sides.key[side]) {
      SLUICE_ASSIGN_OR_RETURN(auto e, plan::CompileExpr(k.expr, sides.input[side]));
      if (side == 0) key_fields.push_back({k.name, e->type()});
      key_exprs_[side].push_back(std::move(e));
    }
  }
  key_schema_ = Schema(std::move(key_fields));
  key_record_.Resize(key_schema_.size());
  int_key_ = true;
  for (int side = 0; side < 2; ++side) {
    const auto& exprs = key_exprs_[side];
    if (exprs.size() != 1 || !IsIntegral(exprs[0]->type()) || exprs[0]->nullable()) {
      int_key_ = false;
      break;
    }
    int_key_field_[side] = exprs[0]->FieldIndex();
  }
  offset_[0] = 0;
  offset_[1] = sides.input[0].size();
  out_.Resize(sides.output.size());
  for (int side = 0; side < 2; ++side) {
    SideCopy copy = SideCopy::kInts;
    for (const Field& f : sides.input[side].fields()) {
      if (f.nullable || f.type == FieldType::kString) {
        copy = SideCopy::kGeneric;
        break;
      }
      if (f.type == FieldType::kDouble) copy = SideCopy::kNumbers;
    }
    copy_[side] = copy;
  }
  return absl::OkStatus();
}

void JoinOperatorBase::EvalKey(int side, const Record& r) {
  const auto& exprs = key_exprs_[side];
  for (size_t i = 0; i < exprs.size(); ++i) {
    plan::EvalInto(*exprs[i], r, key_schema_.field(i).type, &key_record_, i);
  }
  key_bytes_.clear();
  EncodeRecord(key_schema_, key_record_, &key_bytes_);
  carried_key_group_ = r.carried_key_group();
}

int JoinOperatorBase::EvaluatedKeyGroup() const {
  if (carried_key_group_ >= 0) return carried_key_group_;
  return KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema_, key_record_), ctx_.max_parallelism);
}

bool JoinOperatorBase::IntKeyOfBytes(absl::string_view key, int64_t* value) {
  uint64_t v;
  const char* end = key.data() + key.size();
  if (GetVarint64(key.data(), end, &v) != end) return false;
  *value = UnZigZag(v);
  return true;
}

absl::StatusOr<int> JoinOperatorBase::KeyGroupOf(absl::string_view key) {
  RecordDecoder dec(&key_schema_, key);
  absl::Status s = dec.Next(&key_record_);
  carried_key_group_ = -1;
  if (!s.ok() || !dec.Done()) {
    return ctx_.state_origin.DataLoss(absl::StrCat("a join state key does not decode: ",
                                                   s.ok() ? "bytes left over" : s.message()));
  }
  return EvaluatedKeyGroup();
}

absl::Status JoinOperatorBase::UniqueViolated(int side, const Record& r) {
  EvalKey(side, r);
  // Named as this input's key fields (key_schema_ has the left input's names).
  std::vector<Field> fields = key_schema_.fields();
  for (size_t i = 0; i < fields.size(); ++i) fields[i].name = sides_->key[side][i].name;
  std::string key;
  AppendRecordJson(Schema(std::move(fields)), key_record_, &key);
  return absl::FailedPreconditionError(
      absl::StrCat(ctx_.spec != nullptr ? ctx_.spec->type : "join", " '",
                   ctx_.spec != nullptr ? ctx_.spec->id : "", "': a second record of key ", key,
                   " on the ", side == 0 ? "left" : "right",
                   " input, declared 'unique' (at most one record per key)"));
}

void JoinOperatorBase::FillSide(int side, const Record* r) {
  const Schema& schema = sides_->input[side];
  const size_t base = offset_[side];
  const size_t n = schema.size();
  if (r == nullptr) {
    for (size_t i = 0; i < n; ++i) out_.SetNull(base + i);
    nulled_[side] = true;
    return;
  }
  if (copy_[side] == SideCopy::kGeneric) {
    for (size_t i = 0; i < n; ++i) CopyValue(schema.field(i).type, *r, i, &out_, base + i);
    nulled_[side] = false;
    return;
  }
  // NOT NULL fields without strings: the values' bits, without a switch or a null bit per field.
  if (copy_[side] == SideCopy::kInts) {
    for (size_t i = 0; i < n; ++i) out_[base + i].i = (*r)[i].i;
  } else {
    for (size_t i = 0; i < n; ++i) {
      out_[base + i].i = (*r)[i].i;
      out_[base + i].d = (*r)[i].d;
    }
  }
  if (nulled_[side]) {
    for (size_t i = 0; i < n; ++i) out_.ClearNull(base + i);
    nulled_[side] = false;
  }
}

absl::Status JoinOperatorBase::DecodeOne(int side, const char** pos, const char* end,
                                         Record* record) const {
  const Schema& schema = sides_->input[side];
  if (record->size() != schema.size()) record->Resize(schema.size());
  RecordDecoder dec(&schema, absl::string_view(*pos, end - *pos));
  absl::Status s = dec.Next(record);
  if (!s.ok()) return ctx_.state_origin.DataLoss(absl::StrCat("a join record does not decode: ", s.message()));
  *pos = end - dec.Remaining();
  return absl::OkStatus();
}

absl::Status JoinOperatorBase::DecodeBucket(int side, absl::string_view bucket,
                                            std::vector<Record>* records, size_t* count) const {
  *count = 0;
  SLUICE_ASSIGN_OR_RETURN(absl::string_view body, BucketBody(ctx_.state_origin, bucket));
  const char* pos = body.data();
  const char* end = pos + body.size();
  while (pos < end) {
    if (records->size() <= *count) records->emplace_back();
    SLUICE_RETURN_IF_ERROR(DecodeOne(side, &pos, end, &(*records)[*count]));
    ++*count;
  }
  return absl::OkStatus();
}

absl::Status JoinOperatorBase::RestoreWatermark(const OperatorContext& ctx) {
  return ReadSmallestWatermark(ctx.state_origin, "join watermark state", ctx.restored_state,
                               kJoinStateFormat, &restored_watermark_);
}

void JoinOperatorBase::SnapshotWatermark(std::vector<std::string>* entries) const {
  entries->push_back(WatermarkStateEntry(kJoinStateFormat, Watermark()));
}

absl::StatusOr<absl::string_view> BucketBody(const StateOrigin& origin, absl::string_view bucket) {
  absl::string_view body;
  SLUICE_ASSIGN_OR_RETURN(int version, ReadStateVersion(origin, "join state", bucket, kJoinStateFormat, &body));
  (void)version;
  return body;
}

absl::Status BucketIndex::Load() {
  SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(id_, &stored_));
  data_.clear();
  if (!found) return absl::OkStatus();
  SLUICE_ASSIGN_OR_RETURN(absl::string_view body, BucketBody(state_->origin(), stored_));
  if (body.size() % 8 != 0) {
    return state_->origin().DataLoss(absl::StrCat("join bucket index has ", stored_.size(), " bytes, not 1 + 8 per bucket"));
  }
  data_.assign(body.data(), body.size());
  return absl::OkStatus();
}

absl::Status BucketIndex::Store() {
  if (data_.empty()) return state_->Delete(id_);
  stored_.assign(1, kJoinStateFormat);
  stored_.append(data_);
  return state_->Put(id_, stored_);
}

int64_t BucketIndex::time(size_t i) const { return TimeFromUserKey(user_key(i)); }

absl::string_view TimeUserKey(int64_t ts, char (&buf)[8]) {
  const uint64_t u = static_cast<uint64_t>(ts) ^ (uint64_t{1} << 63);
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<char>(u >> (56 - 8 * i));
  return absl::string_view(buf, 8);
}

int64_t TimeFromUserKey(absl::string_view key) {
  uint64_t u = 0;
  for (size_t i = 0; i < 8 && i < key.size(); ++i) u = (u << 8) | static_cast<unsigned char>(key[i]);
  return static_cast<int64_t>(u ^ (uint64_t{1} << 63));
}

}  // namespace sluice::ops
