#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/record.h"

namespace sluice::plan {

// A compiled, type-checked expression over the fields of one Schema.
//
// Language (parsed and checked once, at job submission):
//   literals     42, -7, 3.14, 'text' or "text", true, false
//   fields       a bare identifier names a field of the input schema (`user_id`, and
//                dotted names such as `left.amount`, as joins name clashing fields);
//                backquotes allow any name (`my field`)
//   arithmetic   + - * / %   (int64 op int64 -> int64; any double -> double; `+` also
//                concatenates strings). Integer arithmetic never fails and never traps:
//                + - * wrap around (two's complement); / truncates toward zero and % takes
//                the sign of the dividend (-7 / 2 == -3, -7 % 2 == -1); x / 0 and x % 0
//                yield 0; INT64_MIN / -1 wraps to INT64_MIN and INT64_MIN % -1 is 0. Double
//                arithmetic is IEEE 754 (1.0 / 0 is inf, 0.0 / 0 is nan).
//   comparison   == != < <= > >=  (numbers with numbers, strings with strings, bools with bools)
//   boolean      and or not  (also && || !), short-circuit
//   grouping     ( ... )
//   functions    lower(s) upper(s) length(s) substr(s, start[, len]) concat(a, b, ...)
//                contains(s, t) starts_with(s, t) ends_with(s, t) trim(s)
//                to_string(x) to_int(x) to_double(x) abs(x) hash(x) (stable, non-negative)
//                if(cond, a, b) min(a, b) max(a, b) to_timestamp(ms)
//                is_null(x) coalesce(a, b, ...)
//                split_index(s, delim, n): the n-th (from 0) piece of s cut at each occurrence
//                  of the string delim, null if there is no such piece ('a/b' gives 'a' and
//                  'b', '' gives one empty piece; a literal delim must not be empty nor a
//                  literal n negative, and at run time those yield null)
//                count_char(s, c): the occurrences in s of c, a one-character string literal
//                hour(ts): the hour of the day (0..23, UTC) of a timestamp
//   nulls        (SQL-like) a nullable field (Field::nullable) may be null; an operator or
//                function with a null operand yields null, except: `and` is false when one
//                side is false and `or` true when one side is true (three-valued logic);
//                if() takes its else branch when the condition is null; is_null(x) is true or
//                false, never null; coalesce(a, b, ...) is its first non-null argument (all of
//                one type; null only if all are). A filter keeps a record only when its
//                condition is true (null counts as false).
//
// Evaluation allocates nothing per record once string scratch buffers have grown. An Expr is
// used by one thread at a time (string results live in per-node scratch space); compile one
// per task.
class Expr {
 public:
  virtual ~Expr() = default;

  FieldType type() const { return type_; }
  // Whether the expression can be null: it reads a nullable field (outside is_null() and a
  // coalesce() with a NOT NULL argument) or calls split_index(). Fixed at compilation; NOT NULL expressions never
  // look at null bits, so they cost what they did before nulls existed.
  bool nullable() const { return nullable_; }

  // Whether the value for `r` is null (then the Eval accessors return unspecified values).
  // Always false when !nullable().
  virtual bool IsNull(const Record& r) const { return false; }

  // Evaluate; call only the accessor matching type() (kTimestamp uses EvalInt).
  virtual int64_t EvalInt(const Record& r) const;
  virtual double EvalDouble(const Record& r) const;
  virtual bool EvalBool(const Record& r) const;
  // The result stays valid until the next evaluation of this expression.
  virtual absl::string_view EvalString(const Record& r) const;
  // A string's value and null together, evaluating the expression once: false when null, else
  // true with the value in `out` (valid as EvalString's). Cheaper than IsNull() then
  // EvalString() where finding the value decides the null (split_index(), if()).
  virtual bool EvalStringOrNull(const Record& r, absl::string_view* out) const;
  // The same for the other types: false when null, else true with the value in `*out`. A
  // node overrides them where it can find both in one pass over its children (strict
  // operators, fields, if(), and/or); the defaults call IsNull() then Eval*(). For a NOT NULL
  // expression they cost what Eval*() does.
  virtual bool EvalIntOrNull(const Record& r, int64_t* out) const;
  virtual bool EvalDoubleOrNull(const Record& r, double* out) const;
  virtual bool EvalBoolOrNull(const Record& r, bool* out) const;

  // Batches of records for sources that generate many at once (datagen): the values EvalInt()
  // gives records[0..n), into out[0..n). REQUIRES: !nullable(), type() kInt64 or kTimestamp,
  // n <= kEvalBatch. Field, literal, integer arithmetic and division-by-literal nodes loop
  // over the batch without a virtual call per record; every other node calls EvalInt() per
  // record (the default).
  static constexpr size_t kEvalBatch = 256;
  virtual void EvalIntBatch(const Record* records, size_t n, int64_t* out) const;
  // A filter's condition over a batch: keep[i] = 1 when the value for records[i] is true, 0
  // when it is false or null (SQL's WHERE), for records[0..n). REQUIRES: type() kBool,
  // n <= kEvalBatch. Integer comparisons and `x % c == k` loop over the batch without a virtual
  // call per record (operands that are fields or literals read in place, other NOT NULL integer
  // operands through EvalIntBatch()); every other node calls EvalBool() or EvalBoolOrNull() per
  // record (the default).
  virtual void EvalBoolBatch(const Record* records, size_t n, uint8_t* keep) const;

  // If the expression is a bare field reference, its index; else -1.
  int FieldIndex() const { return field_index_; }

 protected:
  explicit Expr(FieldType type, bool nullable = false, int field_index = -1)
      : type_(type), nullable_(nullable), field_index_(field_index) {}

 private:
  FieldType type_;
  bool nullable_;
  int field_index_;  // Kept here (not virtual) so EvalInto copies a bare field without a call.
};

// Parses and type-checks `text` against `schema`. Compilation folds constant subexpressions
// (`2 * 60`, `lower('A')`) into literals and picks specialised nodes for common shapes (an
// operand that is a field or a literal is read in place; `/` and `%` by a literal divide by
// multiplication); the results are exactly those of the general nodes.
// Errors are kInvalidArgument with the 1-based column and the reason, e.g.
// "column 7: unknown field 'pirce' (fields: id, price)".
// Nesting (parentheses, function calls, unary operators) deeper than 256 levels is refused:
// "column 257: expression nested deeper than 256 levels".
absl::StatusOr<std::unique_ptr<Expr>> CompileExpr(absl::string_view text, const Schema& schema);

// The 1-based column an error of CompileExpr points at (carried in a status payload), or 0.
int ExprErrorColumn(const absl::Status& status);

// Evaluates `expr` into value `index` of `out`, converting to `out_type` when `expr`'s type
// is numeric and differs (int64 <-> double <-> timestamp). A nullable `expr` also sets or
// clears the value's null bit; a NOT NULL one leaves it alone (REQUIRES: it is clear).
void EvalInto(const Expr& expr, const Record& in, FieldType out_type, Record* out, size_t index);

}  // namespace sluice::plan
