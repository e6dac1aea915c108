#include "plan/expr.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/key_groups.h"
#include "common/status.h"

namespace sluice::plan {

// Defaults for accessors a node's type does not support; callers use only the one matching
// type(), so these are never reached by correct code.
int64_t Expr::EvalInt(const Record&) const { return 0; }
void Expr::EvalIntBatch(const Record* records, size_t n, int64_t* out) const {
  for (size_t i = 0; i < n; ++i) out[i] = EvalInt(records[i]);
}
void Expr::EvalBoolBatch(const Record* records, size_t n, uint8_t* keep) const {
  if (!nullable()) {
    for (size_t i = 0; i < n; ++i) keep[i] = EvalBool(records[i]) ? 1 : 0;
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    bool v;
    keep[i] = EvalBoolOrNull(records[i], &v) && v ? 1 : 0;
  }
}
double Expr::EvalDouble(const Record&) const { return 0; }
bool Expr::EvalBool(const Record&) const { return false; }
absl::string_view Expr::EvalString(const Record&) const { return absl::string_view(); }
bool Expr::EvalStringOrNull(const Record& r, absl::string_view* out) const {
  if (nullable() && IsNull(r)) return false;
  *out = EvalString(r);
  return true;
}
bool Expr::EvalIntOrNull(const Record& r, int64_t* out) const {
  if (nullable() && IsNull(r)) return false;
  *out = EvalInt(r);
  return true;
}
bool Expr::EvalDoubleOrNull(const Record& r, double* out) const {
  if (nullable() && IsNull(r)) return false;
  *out = EvalDouble(r);
  return true;
}
bool Expr::EvalBoolOrNull(const Record& r, bool* out) const {
  if (nullable() && IsNull(r)) return false;
  *out = EvalBool(r);
  return true;
}

namespace {

using ExprPtr = std::unique_ptr<Expr>;

// A nullable child is null for `r`; false without a look at `r` for a NOT NULL one.
inline bool Null(const Expr& e, const Record& r) { return e.nullable() && e.IsNull(r); }

// A bool expression in three-valued logic: -1 null, 0 false, 1 true.
inline int Truth(const Expr& e, const Record& r) {
  bool v;
  if (!e.EvalBoolOrNull(r, &v)) return -1;
  return v ? 1 : 0;
}

// Limits that keep hostile input from exhausting the stack, in the parser and in evaluation:
// nesting (parentheses, function calls, unary operators) and the height of the compiled tree
// (a chain of binary operators adds a level per operator without nesting).
constexpr int kMaxParseDepth = 256;
constexpr int kMaxTreeDepth = 1000;

constexpr char kColumnPayloadUrl[] = "type.sluice.dev/plan.ExprErrorColumn";

// ---------------------------------------------------------------------------------------------
// Value conversions shared by nodes and EvalInto. None allocates.

// Saturating double -> int64 (NaN -> 0); a plain cast of an out-of-range double is undefined.
int64_t DoubleToInt(double d) {
  if (std::isnan(d)) return 0;
  if (d >= 9223372036854775807.0) return std::numeric_limits<int64_t>::max();
  if (d <= -9223372036854775808.0) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(d);
}

double StringToDouble(absl::string_view s) {
  double d = 0;
  return absl::SimpleAtod(s, &d) ? d : 0;
}

// Integer text, else decimal text truncated, else 0.
int64_t StringToInt(absl::string_view s) {
  int64_t v = 0;
  if (absl::SimpleAtoi(s, &v)) return v;
  double d = 0;
  return absl::SimpleAtod(s, &d) ? DoubleToInt(d) : 0;
}

constexpr size_t kNumBufSize = 32;

absl::string_view FormatInt(int64_t v, char* buf) {
  auto res = std::to_chars(buf, buf + kNumBufSize, v);
  return absl::string_view(buf, static_cast<size_t>(res.ptr - buf));
}

// Shortest text that parses back to the same double.
absl::string_view FormatDouble(double v, char* buf) {
  auto res = std::to_chars(buf, buf + kNumBufSize, v);
  if (res.ec != std::errc()) return "nan";
  return absl::string_view(buf, static_cast<size_t>(res.ptr - buf));
}

absl::string_view BoolText(bool b) { return b ? "true" : "false"; }

// Wrapping two's-complement arithmetic (signed overflow would be undefined).
int64_t WrapAdd(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}
int64_t WrapSub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
}
int64_t WrapMul(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
}
int64_t WrapNeg(int64_t a) { return static_cast<int64_t>(0 - static_cast<uint64_t>(a)); }

// ---------------------------------------------------------------------------------------------
// Arithmetic and comparison functors.

struct AddOp {
  static int64_t Int(int64_t a, int64_t b) { return WrapAdd(a, b); }
  static double Double(double a, double b) { return a + b; }
};
struct SubOp {
  static int64_t Int(int64_t a, int64_t b) { return WrapSub(a, b); }
  static double Double(double a, double b) { return a - b; }
};
struct MulOp {
  static int64_t Int(int64_t a, int64_t b) { return WrapMul(a, b); }
  static double Double(double a, double b) { return a * b; }
};
struct DivOp {
  static int64_t Int(int64_t a, int64_t b) {
    if (b == 0) return 0;
    if (b == -1) return WrapNeg(a);  // INT64_MIN / -1 traps on x86.
    return a / b;
  }
  static double Double(double a, double b) { return a / b; }
};
struct ModOp {
  static int64_t Int(int64_t a, int64_t b) {
    if (b == 0 || b == -1) return 0;
    return a % b;
  }
  static double Double(double a, double b) { return std::fmod(a, b); }
};

// Evaluates `e` as C++ type T; T selects the accessor.
template <typename T>
T EvalAs(const Expr& e, const Record& r);
template <>
int64_t EvalAs<int64_t>(const Expr& e, const Record& r) { return e.EvalInt(r); }
template <>
double EvalAs<double>(const Expr& e, const Record& r) { return e.EvalDouble(r); }
template <>
bool EvalAs<bool>(const Expr& e, const Record& r) { return e.EvalBool(r); }
template <>
absl::string_view EvalAs<absl::string_view>(const Expr& e, const Record& r) {
  return e.EvalString(r);
}

// Evaluates `e` as C++ type T with its null: false when null.
template <typename T>
bool EvalOrNullAs(const Expr& e, const Record& r, T* out);
template <>
bool EvalOrNullAs<int64_t>(const Expr& e, const Record& r, int64_t* out) {
  return e.EvalIntOrNull(r, out);
}
template <>
bool EvalOrNullAs<double>(const Expr& e, const Record& r, double* out) {
  return e.EvalDoubleOrNull(r, out);
}
template <>
bool EvalOrNullAs<bool>(const Expr& e, const Record& r, bool* out) {
  return e.EvalBoolOrNull(r, out);
}
template <>
bool EvalOrNullAs<absl::string_view>(const Expr& e, const Record& r, absl::string_view* out) {
  return e.EvalStringOrNull(r, out);
}

// ---------------------------------------------------------------------------------------------
// Nodes. Each node owns its children; string results live in the node's `scratch_`.

class IntLiteral final : public Expr {
 public:
  IntLiteral(FieldType type, int64_t v) : Expr(type), v_(v) {}
  int64_t EvalInt(const Record&) const override { return v_; }
  void EvalIntBatch(const Record*, size_t n, int64_t* out) const override {
    std::fill(out, out + n, v_);
  }

 private:
  const int64_t v_;
};

class DoubleLiteral final : public Expr {
 public:
  explicit DoubleLiteral(double v) : Expr(FieldType::kDouble), v_(v) {}
  double EvalDouble(const Record&) const override { return v_; }

 private:
  const double v_;
};

class BoolLiteral final : public Expr {
 public:
  explicit BoolLiteral(bool v) : Expr(FieldType::kBool), v_(v) {}
  bool EvalBool(const Record&) const override { return v_; }

 private:
  const bool v_;
};

class StringLiteral final : public Expr {
 public:
  explicit StringLiteral(std::string v) : Expr(FieldType::kString), v_(std::move(v)) {}
  absl::string_view EvalString(const Record&) const override { return v_; }

 private:
  const std::string v_;
};

class FieldRef final : public Expr {
 public:
  FieldRef(FieldType type, bool nullable, int index)
      : Expr(type, nullable, index), index_(index) {}
  bool IsNull(const Record& r) const override { return r.IsNull(index_); }
  int64_t EvalInt(const Record& r) const override { return r.GetInt(index_); }
  void EvalIntBatch(const Record* records, size_t n, int64_t* out) const override {
    for (size_t i = 0; i < n; ++i) out[i] = records[i].GetInt(index_);
  }
  double EvalDouble(const Record& r) const override { return r.GetDouble(index_); }
  bool EvalBool(const Record& r) const override { return r.GetBool(index_); }
  absl::string_view EvalString(const Record& r) const override { return r.GetString(index_); }
  bool EvalIntOrNull(const Record& r, int64_t* out) const override {
    if (nullable() && r.IsNull(index_)) return false;
    *out = r.GetInt(index_);
    return true;
  }
  bool EvalDoubleOrNull(const Record& r, double* out) const override {
    if (nullable() && r.IsNull(index_)) return false;
    *out = r.GetDouble(index_);
    return true;
  }
  bool EvalBoolOrNull(const Record& r, bool* out) const override {
    if (nullable() && r.IsNull(index_)) return false;
    *out = r.GetBool(index_);
    return true;
  }
  bool EvalStringOrNull(const Record& r, absl::string_view* out) const override {
    if (nullable() && r.IsNull(index_)) return false;
    *out = r.GetString(index_);
    return true;
  }

 private:
  const int index_;
};

// Null when its child is (strict), as every unary operator and one-argument function.
class UnaryExpr : public Expr {
 public:
  bool IsNull(const Record& r) const override { return Null(*child_, r); }

 protected:
  UnaryExpr(FieldType type, ExprPtr child)
      : Expr(type, child->nullable()), child_(std::move(child)) {}
  const ExprPtr child_;
};

// Null when either operand is (strict), as arithmetic, comparisons, min/max, contains().
class BinaryExpr : public Expr {
 public:
  bool IsNull(const Record& r) const override { return Null(*l_, r) || Null(*r_, r); }

 protected:
  BinaryExpr(FieldType type, ExprPtr l, ExprPtr r)
      : Expr(type, l->nullable() || r->nullable()), l_(std::move(l)), r_(std::move(r)) {}
  const ExprPtr l_;
  const ExprPtr r_;
};

bool AnyNullable(const std::vector<ExprPtr>& v) {
  for (const ExprPtr& e : v) {
    if (e != nullptr && e->nullable()) return true;
  }
  return false;
}

bool AnyNull(const std::vector<const Expr*>& v, const Record& r) {
  for (const Expr* e : v) {
    if (e != nullptr && Null(*e, r)) return true;
  }
  return false;
}

// An integral child seen under another integral type (int64 <-> timestamp).
class Retype final : public UnaryExpr {
 public:
  Retype(FieldType type, ExprPtr child) : UnaryExpr(type, std::move(child)) {}
  int64_t EvalInt(const Record& r) const override { return child_->EvalInt(r); }
};

class IntToDouble final : public UnaryExpr {
 public:
  explicit IntToDouble(ExprPtr child) : UnaryExpr(FieldType::kDouble, std::move(child)) {}
  double EvalDouble(const Record& r) const override {
    return static_cast<double>(child_->EvalInt(r));
  }
  const Expr& child() const { return *child_; }
};

class DoubleToIntExpr final : public UnaryExpr {
 public:
  DoubleToIntExpr(FieldType type, ExprPtr child) : UnaryExpr(type, std::move(child)) {}
  int64_t EvalInt(const Record& r) const override { return DoubleToInt(child_->EvalDouble(r)); }
};

class BoolToInt final : public UnaryExpr {
 public:
  explicit BoolToInt(ExprPtr child) : UnaryExpr(FieldType::kInt64, std::move(child)) {}
  int64_t EvalInt(const Record& r) const override { return child_->EvalBool(r) ? 1 : 0; }
};

class StringToIntExpr final : public UnaryExpr {
 public:
  explicit StringToIntExpr(ExprPtr child) : UnaryExpr(FieldType::kInt64, std::move(child)) {}
  int64_t EvalInt(const Record& r) const override { return StringToInt(child_->EvalString(r)); }
};

class StringToDoubleExpr final : public UnaryExpr {
 public:
  explicit StringToDoubleExpr(ExprPtr child) : UnaryExpr(FieldType::kDouble, std::move(child)) {}
  double EvalDouble(const Record& r) const override {
    return StringToDouble(child_->EvalString(r));
  }
};

// to_string() of a non-string child.
class ToStringExpr final : public UnaryExpr {
 public:
  explicit ToStringExpr(ExprPtr child) : UnaryExpr(FieldType::kString, std::move(child)) {}
  absl::string_view EvalString(const Record& r) const override {
    char buf[kNumBufSize];
    absl::string_view s;
    switch (child_->type()) {
      case FieldType::kDouble: s = FormatDouble(child_->EvalDouble(r), buf); break;
      case FieldType::kBool: return BoolText(child_->EvalBool(r));
      case FieldType::kString: return child_->EvalString(r);
      default: s = FormatInt(child_->EvalInt(r), buf); break;
    }
    scratch_.assign(s.data(), s.size());
    return scratch_;
  }

 private:
  mutable std::string scratch_;
};

// ---------------------------------------------------------------------------------------------
// Operands of binary nodes. A binary node reads each operand in the way its kind (a template
// parameter) says: a child node costs a virtual call, a field or a literal is read in place.

enum class Kind {
  kNode,      // any child: a virtual call
  kField,     // a field of the operand's type
  kIntField,  // an integral field read as a double (`price * 0.908` with an int64 price)
  kLit,       // a literal
};

template <Kind K>
using KindC = std::integral_constant<Kind, K>;

template <typename T>
struct Operand {
  const Expr* node = nullptr;
  int field = -1;
  bool nullable = false;  // a field's
  T lit{};
};

template <typename T>
T FieldAs(const Record& r, int i);
template <>
int64_t FieldAs<int64_t>(const Record& r, int i) { return r.GetInt(i); }
template <>
double FieldAs<double>(const Record& r, int i) { return r.GetDouble(i); }
template <>
bool FieldAs<bool>(const Record& r, int i) { return r.GetBool(i); }
template <>
absl::string_view FieldAs<absl::string_view>(const Record& r, int i) { return r.GetString(i); }

template <typename T, Kind K>
inline T Read(const Operand<T>& o, const Record& r) {
  if constexpr (K == Kind::kLit) {
    return o.lit;
  } else if constexpr (K == Kind::kField) {
    return FieldAs<T>(r, o.field);
  } else if constexpr (K == Kind::kIntField) {
    return static_cast<T>(r.GetInt(o.field));
  } else {
    return EvalAs<T>(*o.node, r);
  }
}

// Read() with the operand's null: false when it is null (a literal never is).
template <typename T, Kind K>
inline bool ReadOrNull(const Operand<T>& o, const Record& r, T* out) {
  if constexpr (K == Kind::kLit) {
    *out = o.lit;
    return true;
  } else if constexpr (K == Kind::kNode) {
    return EvalOrNullAs<T>(*o.node, r, out);
  } else {
    if (o.nullable && r.IsNull(o.field)) return false;
    *out = Read<T, K>(o, r);
    return true;
  }
}

// How `e` (of T's type) can be read in place; defined with the nodes it recognises.
template <typename T>
Kind OperandKind(const Expr& e);

// The operand of kind `k` for `e`, which outlives it (a literal's string stays in its node).
template <typename T>
Operand<T> MakeOperand(const Expr& e, Kind k);

// Evaluates `e` with the record nobody reads: `e` is constant.
const Record& NoRecord() {
  static const Record* const kNone = new Record();
  return *kNone;
}

// Read() of records[0..n) into out[0..n) (Expr::EvalIntBatch()'s REQUIRES hold for the
// operand of a NOT NULL node).
template <Kind K>
inline void ReadIntBatch(const Operand<int64_t>& o, const Record* records, size_t n, int64_t* out) {
  if constexpr (K == Kind::kLit) {
    std::fill(out, out + n, o.lit);
  } else if constexpr (K == Kind::kField) {
    for (size_t i = 0; i < n; ++i) out[i] = records[i].GetInt(o.field);
  } else {
    static_assert(K == Kind::kNode, "integer operands are nodes, fields or literals");
    o.node->EvalIntBatch(records, n, out);
  }
}

template <typename Op, Kind L, Kind R>
class IntArith final : public BinaryExpr {
 public:
  IntArith(FieldType type, ExprPtr l, ExprPtr r)
      : BinaryExpr(type, std::move(l), std::move(r)),
        lo_(MakeOperand<int64_t>(*l_, L)),
        ro_(MakeOperand<int64_t>(*r_, R)) {}
  int64_t EvalInt(const Record& r) const override {
    return Op::Int(Read<int64_t, L>(lo_, r), Read<int64_t, R>(ro_, r));
  }
  void EvalIntBatch(const Record* records, size_t n, int64_t* out) const override {
    int64_t right[kEvalBatch];
    ReadIntBatch<L>(lo_, records, n, out);
    ReadIntBatch<R>(ro_, records, n, right);
    for (size_t i = 0; i < n; ++i) out[i] = Op::Int(out[i], right[i]);
  }
  bool EvalIntOrNull(const Record& r, int64_t* out) const override {
    int64_t a, b;
    if (!ReadOrNull<int64_t, L>(lo_, r, &a) || !ReadOrNull<int64_t, R>(ro_, r, &b)) return false;
    *out = Op::Int(a, b);
    return true;
  }
  const Expr& left() const { return *l_; }
  const Expr& right() const { return *r_; }

 private:
  const Operand<int64_t> lo_;
  const Operand<int64_t> ro_;
};

// `x / c` and `x % c` for a literal c with |c| >= 2 (so neither 0 nor -1): the quotient of the
// magnitudes by multiplication instead of a hardware division (exact for every 64-bit
// dividend: Lemire, Kaser and Kurz, "Faster Remainder by Direct Computation", 2019), signed as
// C++ does (quotient toward zero, remainder with the dividend's sign). A power of two masks
// and shifts.
class ConstDivisor {
 public:
  explicit ConstDivisor(int64_t c)
      : d_(c < 0 ? 0 - static_cast<uint64_t>(c) : static_cast<uint64_t>(c)),
        negative_(c < 0),
        pow2_((d_ & (d_ - 1)) == 0),
        shift_(static_cast<int>(__builtin_ctzll(d_))),
        m_(~static_cast<unsigned __int128>(0) / d_ + 1),
        inverse_(OddInverse(d_ >> shift_)),
        max_quotient_(~uint64_t{0} / d_) {}

  int64_t Div(int64_t a) const {
    const uint64_t q = Quotient(Magnitude(a));
    return (a < 0) != negative_ ? static_cast<int64_t>(0 - q) : static_cast<int64_t>(q);
  }
  int64_t Mod(int64_t a) const {
    const uint64_t m = Remainder(Magnitude(a));
    return a < 0 ? static_cast<int64_t>(0 - m) : static_cast<int64_t>(m);
  }
  // a % c == 0, without the remainder: with |c| = o * 2^s (o odd), |a| * o^-1 mod 2^64 rotated
  // right by s is at most (2^64 - 1) / |c| exactly when c divides |a| (one multiplication;
  // Granlund and Montgomery, 1994, as compilers test `n % c == 0`; a power of two has o = 1).
  bool Divides(int64_t a) const {
    const uint64_t q = Magnitude(a) * inverse_;
    return ((q >> shift_) | (q << ((64 - shift_) & 63))) <= max_quotient_;
  }

 private:
  static uint64_t Magnitude(int64_t a) {
    return a < 0 ? 0 - static_cast<uint64_t>(a) : static_cast<uint64_t>(a);
  }
  // o^-1 mod 2^64 for an odd o (Newton's iteration: each step doubles the correct low bits,
  // from 3 bits for x = o).
  static uint64_t OddInverse(uint64_t o) {
    uint64_t x = o;
    for (int i = 0; i < 5; ++i) x *= 2 - o * x;
    return x;
  }
  // The high 64 bits of the 192-bit product x * y.
  static uint64_t MulHigh(unsigned __int128 x, uint64_t y) {
    const unsigned __int128 low = (x & ~uint64_t{0}) * static_cast<unsigned __int128>(y);
    const unsigned __int128 high = (x >> 64) * static_cast<unsigned __int128>(y);
    return static_cast<uint64_t>((high + (low >> 64)) >> 64);
  }
  uint64_t Quotient(uint64_t a) const { return pow2_ ? a >> shift_ : MulHigh(m_, a); }
  uint64_t Remainder(uint64_t a) const {
    // m_ * a mod 2^128 is the fraction a / d in 128 bits; times d, its integer part.
    return pow2_ ? a & (d_ - 1) : MulHigh(m_ * a, d_);
  }

  const uint64_t d_;  // |c| >= 2
  const bool negative_;
  const bool pow2_;
  const int shift_;
  const unsigned __int128 m_;  // ceil(2^128 / d_)
  const uint64_t inverse_;       // (d_ >> shift_)^-1 mod 2^64
  const uint64_t max_quotient_;  // (2^64 - 1) / d_
};

template <bool kMod, Kind L>
class IntDivByLiteral final : public BinaryExpr {
 public:
  IntDivByLiteral(FieldType type, ExprPtr l, ExprPtr r, int64_t c)
      : BinaryExpr(type, std::move(l), std::move(r)), lo_(MakeOperand<int64_t>(*l_, L)), c_(c) {}
  int64_t EvalInt(const Record& r) const override {
    const int64_t a = Read<int64_t, L>(lo_, r);
    return kMod ? c_.Mod(a) : c_.Div(a);
  }
  void EvalIntBatch(const Record* records, size_t n, int64_t* out) const override {
    ReadIntBatch<L>(lo_, records, n, out);
    for (size_t i = 0; i < n; ++i) out[i] = kMod ? c_.Mod(out[i]) : c_.Div(out[i]);
  }
  bool EvalIntOrNull(const Record& r, int64_t* out) const override {
    int64_t a;
    if (!ReadOrNull<int64_t, L>(lo_, r, &a)) return false;
    *out = kMod ? c_.Mod(a) : c_.Div(a);
    return true;
  }
  const Expr& dividend() const { return *l_; }
  const ConstDivisor& divisor() const { return c_; }

 private:
  const Operand<int64_t> lo_;
  const ConstDivisor c_;
};

// `(x * m) / c` and `(x * m) % c` (or `m * x`) for a field x and literals m and c (|c| >= 2),
// as datagen's keys are written (`(seq * 7919) % 10000`): one node instead of a call for the
// product. The product wraps as `*` does, the division is IntDivByLiteral's. `l_` is the product
// node (the dividend ModCompare reads), `r_` the literal c.
template <bool kMod>
class ScaledDivByLiteral final : public BinaryExpr {
 public:
  ScaledDivByLiteral(FieldType type, ExprPtr product, ExprPtr r, const Expr& x, int64_t m, int64_t c)
      : BinaryExpr(type, std::move(product), std::move(r)),
        xo_(MakeOperand<int64_t>(x, Kind::kField)),
        m_(m),
        c_(c) {}
  int64_t EvalInt(const Record& r) const override { return Apply(Read<int64_t, Kind::kField>(xo_, r)); }
  void EvalIntBatch(const Record* records, size_t n, int64_t* out) const override {
    for (size_t i = 0; i < n; ++i) out[i] = Apply(Read<int64_t, Kind::kField>(xo_, records[i]));
  }
  bool EvalIntOrNull(const Record& r, int64_t* out) const override {
    int64_t x;
    if (!ReadOrNull<int64_t, Kind::kField>(xo_, r, &x)) return false;
    *out = Apply(x);
    return true;
  }
  const Expr& dividend() const { return *l_; }
  const ConstDivisor& divisor() const { return c_; }

 private:
  int64_t Apply(int64_t x) const {
    const int64_t p = WrapMul(x, m_);
    return kMod ? c_.Mod(p) : c_.Div(p);
  }
  const Operand<int64_t> xo_;
  const int64_t m_;
  const ConstDivisor c_;
};

template <typename Op, Kind L, Kind R>
class DoubleArith final : public BinaryExpr {
 public:
  DoubleArith(ExprPtr l, ExprPtr r)
      : BinaryExpr(FieldType::kDouble, std::move(l), std::move(r)),
        lo_(MakeOperand<double>(*l_, L)),
        ro_(MakeOperand<double>(*r_, R)) {}
  double EvalDouble(const Record& r) const override {
    return Op::Double(Read<double, L>(lo_, r), Read<double, R>(ro_, r));
  }
  bool EvalDoubleOrNull(const Record& r, double* out) const override {
    double a, b;
    if (!ReadOrNull<double, L>(lo_, r, &a) || !ReadOrNull<double, R>(ro_, r, &b)) return false;
    *out = Op::Double(a, b);
    return true;
  }

 private:
  const Operand<double> lo_;
  const Operand<double> ro_;
};

class IntNeg final : public UnaryExpr {
 public:
  explicit IntNeg(ExprPtr child) : UnaryExpr(FieldType::kInt64, std::move(child)) {}
  int64_t EvalInt(const Record& r) const override { return WrapNeg(child_->EvalInt(r)); }
};

class DoubleNeg final : public UnaryExpr {
 public:
  explicit DoubleNeg(ExprPtr child) : UnaryExpr(FieldType::kDouble, std::move(child)) {}
  double EvalDouble(const Record& r) const override { return -child_->EvalDouble(r); }
};

class IntAbs final : public UnaryExpr {
 public:
  explicit IntAbs(ExprPtr child) : UnaryExpr(FieldType::kInt64, std::move(child)) {}
  int64_t EvalInt(const Record& r) const override {
    int64_t v = child_->EvalInt(r);
    return v < 0 ? WrapNeg(v) : v;
  }
};

class DoubleAbs final : public UnaryExpr {
 public:
  explicit DoubleAbs(ExprPtr child) : UnaryExpr(FieldType::kDouble, std::move(child)) {}
  double EvalDouble(const Record& r) const override { return std::fabs(child_->EvalDouble(r)); }
};

// Comparison of two children of the same C++ type T.
template <typename T, typename Cmp, Kind L, Kind R>
class Compare final : public BinaryExpr {
 public:
  Compare(ExprPtr l, ExprPtr r)
      : BinaryExpr(FieldType::kBool, std::move(l), std::move(r)),
        lo_(MakeOperand<T>(*l_, L)),
        ro_(MakeOperand<T>(*r_, R)) {}
  bool EvalBool(const Record& r) const override {
    T a = Read<T, L>(lo_, r);
    T b = Read<T, R>(ro_, r);
    return Cmp()(a, b);
  }
  bool EvalBoolOrNull(const Record& r, bool* out) const override {
    T a, b;
    if (!ReadOrNull<T, L>(lo_, r, &a) || !ReadOrNull<T, R>(ro_, r, &b)) return false;
    *out = Cmp()(a, b);
    return true;
  }
  void EvalBoolBatch(const Record* records, size_t n, uint8_t* keep) const override {
    if constexpr (std::is_same_v<T, int64_t>) {
      if (!nullable()) {
        int64_t a[kEvalBatch];
        int64_t b[kEvalBatch];
        ReadIntBatch<L>(lo_, records, n, a);
        ReadIntBatch<R>(ro_, records, n, b);
        for (size_t i = 0; i < n; ++i) keep[i] = Cmp()(a[i], b[i]) ? 1 : 0;
        return;
      }
    }
    for (size_t i = 0; i < n; ++i) {
      T a, b;
      keep[i] = ReadOrNull<T, L>(lo_, records[i], &a) && ReadOrNull<T, R>(ro_, records[i], &b) &&
                        Cmp()(a, b)
                    ? 1
                    : 0;
    }
  }

 private:
  const Operand<T> lo_;
  const Operand<T> ro_;
};

// `x % c == k` and `x % c != k` (kEq false) for literals c (|c| >= 2) and k: one node, and for
// k == 0 a divisibility test instead of the remainder. `l_` is the `x % c` node, `r_` the
// literal k.
template <bool kEq, Kind L>
class ModCompare final : public BinaryExpr {
 public:
  ModCompare(ExprPtr mod, ExprPtr k, const Expr& dividend, const ConstDivisor& c)
      : BinaryExpr(FieldType::kBool, std::move(mod), std::move(k)),
        xo_(MakeOperand<int64_t>(dividend, L)),
        c_(c),
        k_(r_->EvalInt(NoRecord())) {}
  bool EvalBool(const Record& r) const override { return Test(Read<int64_t, L>(xo_, r)); }
  bool EvalBoolOrNull(const Record& r, bool* out) const override {
    int64_t x;
    if (!ReadOrNull<int64_t, L>(xo_, r, &x)) return false;
    *out = Test(x);
    return true;
  }
  void EvalBoolBatch(const Record* records, size_t n, uint8_t* keep) const override {
    if (nullable()) {
      for (size_t i = 0; i < n; ++i) {
        int64_t x;
        keep[i] = ReadOrNull<int64_t, L>(xo_, records[i], &x) && Test(x) ? 1 : 0;
      }
    } else if constexpr (L == Kind::kField) {
      // Locals: the stores into keep (bytes) may alias this node's members.
      const int f = xo_.field;
      const ConstDivisor c = c_;
      if (k_ == 0) {
        for (size_t i = 0; i < n; ++i) keep[i] = c.Divides(records[i].GetInt(f)) == kEq ? 1 : 0;
      } else {
        for (size_t i = 0; i < n; ++i) keep[i] = Test(records[i].GetInt(f)) ? 1 : 0;
      }
    } else {
      int64_t x[kEvalBatch];
      ReadIntBatch<L>(xo_, records, n, x);
      for (size_t i = 0; i < n; ++i) keep[i] = Test(x[i]) ? 1 : 0;
    }
  }

 private:
  bool Test(int64_t x) const {
    const bool equal = k_ == 0 ? c_.Divides(x) : c_.Mod(x) == k_;
    return equal == kEq;
  }
  const Operand<int64_t> xo_;
  const ConstDivisor c_;
  const int64_t k_;
};

class AndExpr final : public BinaryExpr {
 public:
  AndExpr(ExprPtr l, ExprPtr r) : BinaryExpr(FieldType::kBool, std::move(l), std::move(r)) {}
  // Three-valued: false if either side is false, else null if either is null.
  bool EvalBool(const Record& r) const override {
    if (!nullable()) return l_->EvalBool(r) && r_->EvalBool(r);
    return Truth(*l_, r) == 1 && Truth(*r_, r) == 1;
  }
  bool IsNull(const Record& r) const override {
    const int a = Truth(*l_, r);
    if (a == 0) return false;
    const int b = Truth(*r_, r);
    return b != 0 && (a < 0 || b < 0);
  }
  bool EvalBoolOrNull(const Record& r, bool* out) const override {
    const int a = Truth(*l_, r);
    *out = false;
    if (a == 0) return true;
    const int b = Truth(*r_, r);
    if (b == 0) return true;
    *out = true;
    return a > 0 && b > 0;
  }
};

class OrExpr final : public BinaryExpr {
 public:
  OrExpr(ExprPtr l, ExprPtr r) : BinaryExpr(FieldType::kBool, std::move(l), std::move(r)) {}
  // Three-valued: true if either side is true, else null if either is null.
  bool EvalBool(const Record& r) const override {
    if (!nullable()) return l_->EvalBool(r) || r_->EvalBool(r);
    return Truth(*l_, r) == 1 || Truth(*r_, r) == 1;
  }
  bool IsNull(const Record& r) const override {
    const int a = Truth(*l_, r);
    if (a == 1) return false;
    const int b = Truth(*r_, r);
    return b != 1 && (a < 0 || b < 0);
  }
  bool EvalBoolOrNull(const Record& r, bool* out) const override {
    const int a = Truth(*l_, r);
    *out = true;
    if (a == 1) return true;
    const int b = Truth(*r_, r);
    if (b == 1) return true;
    *out = false;
    return a == 0 && b == 0;
  }
};

class NotExpr final : public UnaryExpr {
 public:
  explicit NotExpr(ExprPtr child) : UnaryExpr(FieldType::kBool, std::move(child)) {}
  bool EvalBool(const Record& r) const override { return !child_->EvalBool(r); }
  bool EvalBoolOrNull(const Record& r, bool* out) const override {
    bool v;
    if (!child_->EvalBoolOrNull(r, &v)) return false;
    *out = !v;
    return true;
  }
};

// String concatenation (`+` on strings and concat()); all children are strings.
class ConcatExpr final : public Expr {
 public:
  explicit ConcatExpr(std::vector<ExprPtr> children)
      : Expr(FieldType::kString, AnyNullable(children)), children_(std::move(children)) {}
  bool IsNull(const Record& r) const override {
    for (const ExprPtr& c : children_) {
      if (Null(*c, r)) return true;
    }
    return false;
  }
  absl::string_view EvalString(const Record& r) const override {
    scratch_.clear();
    for (const ExprPtr& c : children_) {
      absl::string_view s = c->EvalString(r);
      scratch_.append(s.data(), s.size());
    }
    return scratch_;
  }

 private:
  const std::vector<ExprPtr> children_;
  mutable std::string scratch_;
};

class CaseExpr final : public UnaryExpr {
 public:
  CaseExpr(bool upper, ExprPtr child)
      : UnaryExpr(FieldType::kString, std::move(child)), upper_(upper) {}
  absl::string_view EvalString(const Record& r) const override {
    absl::string_view s = child_->EvalString(r);
    scratch_.assign(s.data(), s.size());
    if (upper_) {
      absl::AsciiStrToUpper(&scratch_);
    } else {
      absl::AsciiStrToLower(&scratch_);
    }
    return scratch_;
  }
  bool upper() const { return upper_; }
  const Expr& child() const { return *child_; }

 private:
  const bool upper_;
  mutable std::string scratch_;
};

// `lower(s) == 'lit'` and `!=` (kEq false): compares s with the literal a character at a
// time, lowering as it goes, without making the lowered copy (q21 compares one channel with
// four names). `l_` is the lower() node, `r_` the literal.
template <bool kEq>
class LowerComparedWithLiteral final : public BinaryExpr {
 public:
  LowerComparedWithLiteral(ExprPtr lower, ExprPtr lit, const Expr& s)
      : BinaryExpr(FieldType::kBool, std::move(lower), std::move(lit)),
        s_(s),
        lit_(r_->EvalString(NoRecord())) {}
  bool EvalBool(const Record& r) const override { return Test(s_.EvalString(r)); }
  bool EvalBoolOrNull(const Record& r, bool* out) const override {
    absl::string_view v;
    if (!s_.EvalStringOrNull(r, &v)) return false;
    *out = Test(v);
    return true;
  }

 private:
  bool Test(absl::string_view v) const {
    bool equal = v.size() == lit_.size();
    for (size_t i = 0; equal && i < v.size(); ++i) equal = absl::ascii_tolower(v[i]) == lit_[i];
    return equal == kEq;
  }
  const Expr& s_;  // lower()'s argument
  const std::string lit_;
};

// trim() returns a view into the child's result: no copy needed.
class TrimExpr final : public UnaryExpr {
 public:
  explicit TrimExpr(ExprPtr child) : UnaryExpr(FieldType::kString, std::move(child)) {}
  absl::string_view EvalString(const Record& r) const override {
    return absl::StripAsciiWhitespace(child_->EvalString(r));
  }
};

class LengthExpr final : public UnaryExpr {
 public:
  explicit LengthExpr(ExprPtr child) : UnaryExpr(FieldType::kInt64, std::move(child)) {}
  int64_t EvalInt(const Record& r) const override {
    return static_cast<int64_t>(child_->EvalString(r).size());
  }
};

// substr(s, start[, len]): 0-based byte offsets, clamped to the string.
class SubstrExpr final : public Expr {
 public:
  SubstrExpr(ExprPtr s, ExprPtr start, ExprPtr len)
      : Expr(FieldType::kString,
             s->nullable() || start->nullable() || (len != nullptr && len->nullable())),
        s_(std::move(s)),
        start_(std::move(start)),
        len_(std::move(len)) {}
  bool IsNull(const Record& r) const override {
    return AnyNull({s_.get(), start_.get(), len_.get()}, r);
  }
  absl::string_view EvalString(const Record& r) const override {
    absl::string_view s = s_->EvalString(r);
    const int64_t size = static_cast<int64_t>(s.size());
    int64_t start = std::clamp<int64_t>(start_->EvalInt(r), 0, size);
    int64_t len = size - start;
    if (len_ != nullptr) len = std::clamp<int64_t>(len_->EvalInt(r), 0, len);
    return s.substr(static_cast<size_t>(start), static_cast<size_t>(len));
  }

 private:
  const ExprPtr s_;
  const ExprPtr start_;
  const ExprPtr len_;  // May be null: to the end.
};

enum class MatchKind { kContains, kStartsWith, kEndsWith };

class MatchExpr final : public BinaryExpr {
 public:
  MatchExpr(MatchKind kind, ExprPtr l, ExprPtr r)
      : BinaryExpr(FieldType::kBool, std::move(l), std::move(r)), kind_(kind) {}
  bool EvalBool(const Record& r) const override {
    absl::string_view a = l_->EvalString(r);
    absl::string_view b = r_->EvalString(r);
    switch (kind_) {
      case MatchKind::kContains: return absl::StrContains(a, b);
      case MatchKind::kStartsWith: return absl::StartsWith(a, b);
      case MatchKind::kEndsWith: return absl::EndsWith(a, b);
    }
    return false;
  }

 private:
  const MatchKind kind_;
};

// hash(x): stable across processes (common/key_groups.h), non-negative.
class HashExpr final : public UnaryExpr {
 public:
  explicit HashExpr(ExprPtr child) : UnaryExpr(FieldType::kInt64, std::move(child)) {}
  int64_t EvalInt(const Record& r) const override {
    uint64_t h = 0;
    switch (child_->type()) {
      case FieldType::kString: h = HashBytes(child_->EvalString(r)); break;
      case FieldType::kBool: h = HashInt64(child_->EvalBool(r) ? 1 : 0); break;
      case FieldType::kDouble: {
        double d = child_->EvalDouble(r);
        if (d == 0) d = 0;  // -0.0 and 0.0 compare equal, so hash alike.
        int64_t bits;
        std::memcpy(&bits, &d, sizeof(bits));
        h = HashInt64(bits);
        break;
      }
      default: h = HashInt64(child_->EvalInt(r)); break;
    }
    return static_cast<int64_t>(h & static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
  }
};

// split_index(s, delim, n): the n-th (0-based) piece of `s` cut at every occurrence of the
// whole string `delim`. Null when an argument is, when n < 0 or past the last piece, or when
// `delim` is empty; so always nullable. The result is a view into `s`'s result.
class SplitIndexExpr final : public Expr {
 public:
  SplitIndexExpr(ExprPtr s, ExprPtr delim, ExprPtr n)
      : Expr(FieldType::kString, /*nullable=*/true),
        s_(std::move(s)),
        delim_(std::move(delim)),
        n_(std::move(n)) {}
  bool IsNull(const Record& r) const override {
    absl::string_view piece;
    return !EvalStringOrNull(r, &piece);
  }
  absl::string_view EvalString(const Record& r) const override {
    absl::string_view piece;
    EvalStringOrNull(r, &piece);
    return piece;
  }
  // Each argument evaluated once (a nested split_index() too), its null with its value.
  bool EvalStringOrNull(const Record& r, absl::string_view* piece) const override {
    if (Null(*n_, r)) return false;
    const int64_t n = n_->EvalInt(r);
    absl::string_view delim;
    if (n < 0 || !delim_->EvalStringOrNull(r, &delim) || delim.empty()) return false;
    absl::string_view s;
    if (!s_->EvalStringOrNull(r, &s)) return false;
    for (int64_t i = 0; i < n; ++i) {
      const size_t at = s.find(delim);
      if (at == absl::string_view::npos) return false;
      s.remove_prefix(at + delim.size());
    }
    *piece = s.substr(0, s.find(delim));
    return true;
  }

 private:
  const ExprPtr s_;
  const ExprPtr delim_;
  const ExprPtr n_;
};

// count_char(s, c): how many bytes of `s` equal the character c (a one-character literal).
class CountCharExpr final : public UnaryExpr {
 public:
  CountCharExpr(ExprPtr s, char c) : UnaryExpr(FieldType::kInt64, std::move(s)), c_(c) {}
  int64_t EvalInt(const Record& r) const override {
    const absl::string_view s = child_->EvalString(r);
    return static_cast<int64_t>(std::count(s.begin(), s.end(), c_));
  }

 private:
  const char c_;
};

// hour(ts): the hour of the day (0..23, UTC) of a timestamp in ms since the epoch; times
// before the epoch count back from it (-1 ms is 23).
class HourExpr final : public UnaryExpr {
 public:
  explicit HourExpr(ExprPtr ts) : UnaryExpr(FieldType::kInt64, std::move(ts)) {}
  int64_t EvalInt(const Record& r) const override {
    constexpr int64_t kHourMs = 3'600'000;
    constexpr int64_t kDayMs = 24 * kHourMs;
    int64_t ms = child_->EvalInt(r) % kDayMs;
    if (ms < 0) ms += kDayMs;
    return ms / kHourMs;
  }
};

// if(cond, a, b): evaluates only the chosen branch; a null condition picks `b`.
class IfExpr final : public Expr {
 public:
  IfExpr(FieldType type, ExprPtr cond, ExprPtr a, ExprPtr b)
      : Expr(type, a->nullable() || b->nullable()),
        cond_(std::move(cond)),
        a_(std::move(a)),
        b_(std::move(b)) {}
  bool IsNull(const Record& r) const override { return Null(Pick(r), r); }
  int64_t EvalInt(const Record& r) const override { return Pick(r).EvalInt(r); }
  double EvalDouble(const Record& r) const override { return Pick(r).EvalDouble(r); }
  bool EvalBool(const Record& r) const override { return Pick(r).EvalBool(r); }
  absl::string_view EvalString(const Record& r) const override { return Pick(r).EvalString(r); }
  bool EvalStringOrNull(const Record& r, absl::string_view* out) const override {
    return Pick(r).EvalStringOrNull(r, out);
  }
  bool EvalIntOrNull(const Record& r, int64_t* out) const override {
    return Pick(r).EvalIntOrNull(r, out);
  }
  bool EvalDoubleOrNull(const Record& r, double* out) const override {
    return Pick(r).EvalDoubleOrNull(r, out);
  }
  bool EvalBoolOrNull(const Record& r, bool* out) const override {
    return Pick(r).EvalBoolOrNull(r, out);
  }

 private:
  const Expr& Pick(const Record& r) const { return Truth(*cond_, r) == 1 ? *a_ : *b_; }
  const ExprPtr cond_;
  const ExprPtr a_;
  const ExprPtr b_;
};

// is_null(x): never null.
class IsNullExpr final : public Expr {
 public:
  explicit IsNullExpr(ExprPtr child) : Expr(FieldType::kBool), child_(std::move(child)) {}
  bool EvalBool(const Record& r) const override { return Null(*child_, r); }

 private:
  const ExprPtr child_;
};

// coalesce(a, b, ...): the first non-null argument (the last one when all are null); all
// arguments have the expression's type. Nullable only if every argument is.
class CoalesceExpr final : public Expr {
 public:
  CoalesceExpr(FieldType type, std::vector<ExprPtr> args)
      : Expr(type, AllNullable(args)), args_(std::move(args)) {}
  int64_t EvalInt(const Record& r) const override { return Pick(r).EvalInt(r); }
  double EvalDouble(const Record& r) const override { return Pick(r).EvalDouble(r); }
  bool EvalBool(const Record& r) const override { return Pick(r).EvalBool(r); }
  absl::string_view EvalString(const Record& r) const override { return Pick(r).EvalString(r); }
  bool IsNull(const Record& r) const override { return Null(Pick(r), r); }
  // Each argument evaluated once: the first that is not null gives the value.
  bool EvalIntOrNull(const Record& r, int64_t* out) const override { return First(r, out); }
  bool EvalDoubleOrNull(const Record& r, double* out) const override { return First(r, out); }
  bool EvalBoolOrNull(const Record& r, bool* out) const override { return First(r, out); }
  bool EvalStringOrNull(const Record& r, absl::string_view* out) const override {
    return First(r, out);
  }

 private:
  template <typename T>
  bool First(const Record& r, T* out) const {
    for (const ExprPtr& a : args_) {
      if (EvalOrNullAs<T>(*a, r, out)) return true;
    }
    return false;
  }
  static bool AllNullable(const std::vector<ExprPtr>& v) {
    for (const ExprPtr& e : v) {
      if (!e->nullable()) return false;
    }
    return true;
  }
  const Expr& Pick(const Record& r) const {
    for (size_t i = 0; i + 1 < args_.size(); ++i) {
      if (!Null(*args_[i], r)) return *args_[i];
    }
    return *args_.back();
  }
  const std::vector<ExprPtr> args_;
};

// min/max of two children of C++ type T. Both string results are views of distinct nodes,
// so returning either one is safe.
template <typename T, bool kMax>
class MinMaxExpr final : public BinaryExpr {
 public:
  MinMaxExpr(FieldType type, ExprPtr l, ExprPtr r)
      : BinaryExpr(type, std::move(l), std::move(r)) {}
  int64_t EvalInt(const Record& r) const override { return Eval<int64_t>(r); }
  double EvalDouble(const Record& r) const override { return Eval<double>(r); }
  bool EvalBool(const Record& r) const override { return Eval<bool>(r); }
  absl::string_view EvalString(const Record& r) const override {
    return Eval<absl::string_view>(r);
  }

 private:
  template <typename U>
  U Eval(const Record& r) const {
    if constexpr (!std::is_same_v<T, U>) {
      return U();
    } else {
      T a = EvalAs<T>(*l_, r);
      T b = EvalAs<T>(*r_, r);
      if constexpr (kMax) {
        return a < b ? b : a;
      } else {
        return b < a ? b : a;
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Tokenizer.

enum class TokKind { kEnd, kInt, kDouble, kString, kIdent, kQuotedIdent, kOp };

struct Token {
  TokKind kind = TokKind::kEnd;
  int column = 0;    // 1-based.
  std::string text;  // Identifier, unescaped string, operator or number text.
  uint64_t int_value = 0;
  double double_value = 0;
};

absl::Status ErrorAt(int column, absl::string_view reason) {
  absl::Status s = absl::InvalidArgumentError(absl::StrCat("column ", column, ": ", reason));
  s.SetPayload(kColumnPayloadUrl, absl::Cord(absl::StrCat(column)));
  return s;
}

absl::Status TooDeep(int column) {
  return ErrorAt(column, absl::StrCat("expression nested deeper than ", kMaxParseDepth, " levels"));
}

bool IsIdentStart(char c) { return absl::ascii_isalpha(c) || c == '_'; }
bool IsIdentChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }

std::string DescribeChar(char c) {
  if (absl::ascii_isprint(c)) return absl::StrCat("'", absl::string_view(&c, 1), "'");
  static const char kHex[] = "0123456789abcdef";
  unsigned char u = static_cast<unsigned char>(c);
  const char esc[] = {'\\', 'x', kHex[u >> 4], kHex[u & 15]};
  return absl::StrCat("byte '", absl::string_view(esc, 4), "'");
}

std::string DescribeToken(const Token& t) {
  switch (t.kind) {
    case TokKind::kEnd: return "end of expression";
    case TokKind::kString: return absl::StrCat("string '", t.text, "'");
    case TokKind::kQuotedIdent: return absl::StrCat("`", t.text, "`");
    default: return absl::StrCat("'", t.text, "'");
  }
}

class Tokenizer {
 public:
  explicit Tokenizer(absl::string_view text) : text_(text) {}

  absl::StatusOr<std::vector<Token>> Run() {
    std::vector<Token> out;
    while (true) {
      while (pos_ < text_.size() && absl::ascii_isspace(text_[pos_])) ++pos_;
      Token t;
      t.column = static_cast<int>(pos_) + 1;
      if (pos_ >= text_.size()) {
        out.push_back(std::move(t));
        return out;
      }
      const char c = text_[pos_];
      if (absl::ascii_isdigit(c) ||
          (c == '.' && pos_ + 1 < text_.size() && absl::ascii_isdigit(text_[pos_ + 1]))) {
        SLUICE_RETURN_IF_ERROR(Number(&t));
      } else if (IsIdentStart(c)) {
        size_t start = pos_;
        // A dot between identifier parts belongs to the name (`left.amount`, join outputs).
        while (pos_ < text_.size() &&
               (IsIdentChar(text_[pos_]) ||
                (text_[pos_] == '.' && pos_ + 1 < text_.size() && IsIdentStart(text_[pos_ + 1])))) {
          ++pos_;
        }
        t.kind = TokKind::kIdent;
        t.text = std::string(text_.substr(start, pos_ - start));
      } else if (c == '\'' || c == '"') {
        SLUICE_RETURN_IF_ERROR(Quoted(c, "string", &t));
        t.kind = TokKind::kString;
      } else if (c == '`') {
        SLUICE_RETURN_IF_ERROR(Quoted(c, "field name", &t));
        t.kind = TokKind::kQuotedIdent;
      } else {
        SLUICE_RETURN_IF_ERROR(Operator(&t));
      }
      out.push_back(std::move(t));
    }
  }

 private:
  absl::Status Number(Token* t) {
    const size_t start = pos_;
    bool is_double = false;
    auto digits = [&] {
      while (pos_ < text_.size() && absl::ascii_isdigit(text_[pos_])) ++pos_;
    };
    digits();
    if (pos_ + 1 < text_.size() && text_[pos_] == '.' && absl::ascii_isdigit(text_[pos_ + 1])) {
      is_double = true;
      ++pos_;
      digits();
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      size_t p = pos_ + 1;
      if (p < text_.size() && (text_[p] == '+' || text_[p] == '-')) ++p;
      if (p < text_.size() && absl::ascii_isdigit(text_[p])) {
        is_double = true;
        pos_ = p;
        digits();
      }
    }
    t->text = std::string(text_.substr(start, pos_ - start));
    if (pos_ < text_.size() && (IsIdentChar(text_[pos_]) || text_[pos_] == '.')) {
      return ErrorAt(t->column, absl::StrCat("malformed number '", t->text,
                                             absl::string_view(&text_[pos_], 1), "'"));
    }
    const char* first = t->text.data();
    const char* last = first + t->text.size();
    if (is_double) {
      t->kind = TokKind::kDouble;
      auto res = std::from_chars(first, last, t->double_value);
      if (res.ec != std::errc() || res.ptr != last || !std::isfinite(t->double_value)) {
        return ErrorAt(t->column, absl::StrCat("number out of range: ", t->text));
      }
    } else {
      t->kind = TokKind::kInt;
      auto res = std::from_chars(first, last, t->int_value);
      // 2^63 is allowed here only so that a leading '-' can make INT64_MIN; the parser checks.
      if (res.ec != std::errc() || res.ptr != last || t->int_value > (uint64_t{1} << 63)) {
        return ErrorAt(t->column, absl::StrCat("integer out of range: ", t->text));
      }
    }
    return absl::OkStatus();
  }

  // A quoted run ending at an unescaped `quote`; backslash escapes \n \t \r \\ and quotes.
  absl::Status Quoted(char quote, absl::string_view what, Token* t) {
    ++pos_;
    while (pos_ < text_.size()) {
      char c = text_[pos_++];
      if (c == quote) return absl::OkStatus();
      if (c == '\\' && pos_ < text_.size()) {
        char e = text_[pos_++];
        switch (e) {
          case 'n': c = '\n'; break;
          case 't': c = '\t'; break;
          case 'r': c = '\r'; break;
          default: c = e; break;
        }
      }
      t->text.push_back(c);
    }
    return ErrorAt(t->column, absl::StrCat("unterminated ", what));
  }

  absl::Status Operator(Token* t) {
    static constexpr absl::string_view kTwoChar[] = {"==", "!=", "<=", ">=", "&&", "||"};
    static constexpr absl::string_view kOneChar = "+-*/%(),<>!";
    absl::string_view rest = text_.substr(pos_);
    for (absl::string_view op : kTwoChar) {
      if (absl::StartsWith(rest, op)) {
        t->kind = TokKind::kOp;
        t->text = std::string(op);
        pos_ += 2;
        return absl::OkStatus();
      }
    }
    const char c = text_[pos_];
    if (kOneChar.find(c) != absl::string_view::npos) {
      t->kind = TokKind::kOp;
      t->text = std::string(1, c);
      ++pos_;
      return absl::OkStatus();
    }
    if (c == '=') return ErrorAt(t->column, "unexpected '=' (use '==' to compare)");
    if (c == '&') return ErrorAt(t->column, "unexpected '&' (use '&&' or 'and')");
    if (c == '|') return ErrorAt(t->column, "unexpected '|' (use '||' or 'or')");
    return ErrorAt(t->column, absl::StrCat("unexpected character ", DescribeChar(c)));
  }

  const absl::string_view text_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Parser and type checker.
//
//   expr       := or
//   or         := and (('or' | '||') and)*
//   and        := not (('and' | '&&') not)*
//   not        := ('not' | '!') not | comparison
//   comparison := additive (('==' | '!=' | '<' | '<=' | '>' | '>=') additive)*
//   additive   := term (('+' | '-') term)*
//   term       := unary (('*' | '/' | '%') unary)*
//   unary      := ('-' | '+') unary | primary
//   primary    := INT | DOUBLE | STRING | 'true' | 'false' | IDENT '(' [expr (',' expr)*] ')'
//               | IDENT | `QUOTED` | '(' expr ')'

struct Node {
  ExprPtr expr;
  int column = 0;         // Where the node's text starts, for messages.
  int depth = 1;          // Height of the tree below and including this node.
  bool constant = false;  // No field below: folded into a literal unless it may be null.
  FieldType type() const { return expr->type(); }
};

struct FunctionInfo {
  absl::string_view name;
  int min_args;
  int max_args;  // -1: unbounded.
};

constexpr FunctionInfo kFunctions[] = {
    {"abs", 1, 1},         {"concat", 1, -1},      {"contains", 2, 2},   {"ends_with", 2, 2},
    {"hash", 1, 1},        {"if", 3, 3},           {"length", 1, 1},     {"lower", 1, 1},
    {"max", 2, 2},         {"min", 2, 2},          {"starts_with", 2, 2}, {"substr", 2, 3},
    {"to_double", 1, 1},   {"to_int", 1, 1},       {"to_string", 1, 1},  {"to_timestamp", 1, 1},
    {"trim", 1, 1},        {"upper", 1, 1},        {"is_null", 1, 1},    {"coalesce", 1, -1},
    {"split_index", 3, 3}, {"count_char", 2, 2},   {"hour", 1, 1},
};

const FunctionInfo* FindFunction(absl::string_view name) {
  for (const FunctionInfo& f : kFunctions) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

absl::string_view TypeName(FieldType t) { return FieldTypeName(t); }

template <typename T>
Kind OperandKind(const Expr& e) {
  if constexpr (std::is_same_v<T, bool>) {
    return Kind::kNode;  // Rare in comparisons: not worth the instantiations.
  } else {
    if (e.FieldIndex() >= 0) return Kind::kField;
    if constexpr (std::is_same_v<T, double>) {
      if (dynamic_cast<const DoubleLiteral*>(&e) != nullptr) return Kind::kLit;
      const auto* widen = dynamic_cast<const IntToDouble*>(&e);
      if (widen != nullptr && widen->child().FieldIndex() >= 0) return Kind::kIntField;
    } else if constexpr (std::is_same_v<T, int64_t>) {
      if (dynamic_cast<const IntLiteral*>(&e) != nullptr) return Kind::kLit;
    } else {
      if (dynamic_cast<const StringLiteral*>(&e) != nullptr) return Kind::kLit;
    }
    return Kind::kNode;
  }
}

template <typename T>
Operand<T> MakeOperand(const Expr& e, Kind k) {
  Operand<T> o;
  switch (k) {
    case Kind::kNode: o.node = &e; break;
    case Kind::kField:
      o.field = e.FieldIndex();
      o.nullable = e.nullable();
      break;
    case Kind::kIntField:
      o.field = static_cast<const IntToDouble&>(e).child().FieldIndex();
      o.nullable = e.nullable();
      break;
    case Kind::kLit: o.lit = EvalAs<T>(e, NoRecord()); break;
  }
  return o;
}

// Calls make(KindC<L>(), KindC<R>()) with the operand kinds of `l` and `r` (read as T). Two
// literals (folded away by the parser) and a double-only kind elsewhere fall back to kNode.
template <typename T, typename F>
ExprPtr WithKinds(const Expr& l, const Expr& r, F make) {
  if constexpr (std::is_same_v<T, bool>) return make(KindC<Kind::kNode>(), KindC<Kind::kNode>());
  const Kind lk = OperandKind<T>(l);
  const Kind rk = OperandKind<T>(r);
  auto with_right = [&](auto lc) -> ExprPtr {
    switch (rk) {
      case Kind::kField: return make(lc, KindC<Kind::kField>());
      case Kind::kLit:
        if constexpr (decltype(lc)::value != Kind::kLit) return make(lc, KindC<Kind::kLit>());
        break;
      case Kind::kIntField:
        if constexpr (std::is_same_v<T, double>) return make(lc, KindC<Kind::kIntField>());
        break;
      case Kind::kNode: break;
    }
    return make(lc, KindC<Kind::kNode>());
  };
  switch (lk) {
    case Kind::kField: return with_right(KindC<Kind::kField>());
    case Kind::kLit: return with_right(KindC<Kind::kLit>());
    case Kind::kIntField:
      if constexpr (std::is_same_v<T, double>) return with_right(KindC<Kind::kIntField>());
      break;
    case Kind::kNode: break;
  }
  return with_right(KindC<Kind::kNode>());
}

template <typename Op>
ExprPtr MakeIntArith(FieldType type, ExprPtr l, ExprPtr r) {
  if constexpr (std::is_same_v<Op, DivOp> || std::is_same_v<Op, ModOp>) {
    // A literal divisor other than 0, 1 and -1 divides by multiplication.
    constexpr bool kMod = std::is_same_v<Op, ModOp>;
    if (dynamic_cast<const IntLiteral*>(r.get()) != nullptr) {
      const int64_t c = r->EvalInt(NoRecord());
      if (c < -1 || c > 1) {
        // A field times a literal, in either order.
        using FieldTimesLit = IntArith<MulOp, Kind::kField, Kind::kLit>;
        using LitTimesField = IntArith<MulOp, Kind::kLit, Kind::kField>;
        const Expr* x = nullptr;
        const Expr* m = nullptr;
        if (const auto* p = dynamic_cast<const FieldTimesLit*>(l.get())) {
          x = &p->left();
          m = &p->right();
        } else if (const auto* p = dynamic_cast<const LitTimesField*>(l.get())) {
          x = &p->right();
          m = &p->left();
        }
        if (x != nullptr) {
          const int64_t factor = m->EvalInt(NoRecord());
          return std::make_unique<ScaledDivByLiteral<kMod>>(type, std::move(l), std::move(r), *x,
                                                            factor, c);
        }
        if (l->FieldIndex() >= 0) {
          return std::make_unique<IntDivByLiteral<kMod, Kind::kField>>(type, std::move(l),
                                                                       std::move(r), c);
        }
        return std::make_unique<IntDivByLiteral<kMod, Kind::kNode>>(type, std::move(l),
                                                                    std::move(r), c);
      }
    }
  }
  return WithKinds<int64_t>(*l, *r, [&](auto lc, auto rc) -> ExprPtr {
    return std::make_unique<IntArith<Op, decltype(lc)::value, decltype(rc)::value>>(
        type, std::move(l), std::move(r));
  });
}
template <typename Op>
ExprPtr MakeDoubleArith(ExprPtr l, ExprPtr r) {
  return WithKinds<double>(*l, *r, [&](auto lc, auto rc) -> ExprPtr {
    return std::make_unique<DoubleArith<Op, decltype(lc)::value, decltype(rc)::value>>(
        std::move(l), std::move(r));
  });
}

template <typename T, typename Cmp>
ExprPtr MakeCompareOf(ExprPtr l, ExprPtr r) {
  return WithKinds<T>(*l, *r, [&](auto lc, auto rc) -> ExprPtr {
    return std::make_unique<Compare<T, Cmp, decltype(lc)::value, decltype(rc)::value>>(
        std::move(l), std::move(r));
  });
}

// `x % c == k` (literals c and k: ModCompare) or `lower(s) == 'lit'` (LowerComparedWithLiteral),
// also with `!=` and in either operand order, as one node; null for any other shape.
template <typename Cmp>
ExprPtr MakeCompareWithLiteral(FieldType operand_type, ExprPtr* l, ExprPtr* r) {
  constexpr bool kEq = std::is_same_v<Cmp, std::equal_to<>>;
  if constexpr (!kEq && !std::is_same_v<Cmp, std::not_equal_to<>>) {
    return nullptr;
  } else {
    auto is_literal = [operand_type](const ExprPtr& e) {
      if (IsIntegral(operand_type)) return dynamic_cast<const IntLiteral*>(e.get()) != nullptr;
      return operand_type == FieldType::kString &&
             dynamic_cast<const StringLiteral*>(e.get()) != nullptr;
    };
    ExprPtr* x = l;
    ExprPtr* lit = r;
    if (is_literal(*l)) std::swap(x, lit);
    if (!is_literal(*lit)) return nullptr;
    if (const auto* m = dynamic_cast<const IntDivByLiteral<true, Kind::kField>*>(x->get())) {
      return std::make_unique<ModCompare<kEq, Kind::kField>>(std::move(*x), std::move(*lit),
                                                             m->dividend(), m->divisor());
    }
    if (const auto* m = dynamic_cast<const IntDivByLiteral<true, Kind::kNode>*>(x->get())) {
      return std::make_unique<ModCompare<kEq, Kind::kNode>>(std::move(*x), std::move(*lit),
                                                            m->dividend(), m->divisor());
    }
    if (const auto* m = dynamic_cast<const ScaledDivByLiteral<true>*>(x->get())) {
      return std::make_unique<ModCompare<kEq, Kind::kNode>>(std::move(*x), std::move(*lit),
                                                            m->dividend(), m->divisor());
    }
    const auto* c = dynamic_cast<const CaseExpr*>(x->get());
    if (c != nullptr && !c->upper()) {
      return std::make_unique<LowerComparedWithLiteral<kEq>>(std::move(*x), std::move(*lit),
                                                             c->child());
    }
    return nullptr;
  }
}

template <typename Cmp>
ExprPtr MakeCompare(FieldType operand_type, ExprPtr l, ExprPtr r) {
  if (ExprPtr e = MakeCompareWithLiteral<Cmp>(operand_type, &l, &r)) return e;
  switch (operand_type) {
    case FieldType::kDouble: return MakeCompareOf<double, Cmp>(std::move(l), std::move(r));
    case FieldType::kString:
      return MakeCompareOf<absl::string_view, Cmp>(std::move(l), std::move(r));
    case FieldType::kBool: return MakeCompareOf<bool, Cmp>(std::move(l), std::move(r));
    default: return MakeCompareOf<int64_t, Cmp>(std::move(l), std::move(r));
  }
}

// A literal with the value of `e`, a constant NOT NULL expression (no field in it).
ExprPtr Fold(const Expr& e) {
  const Record& none = NoRecord();
  switch (e.type()) {
    case FieldType::kDouble: return std::make_unique<DoubleLiteral>(e.EvalDouble(none));
    case FieldType::kString: return std::make_unique<StringLiteral>(std::string(e.EvalString(none)));
    case FieldType::kBool: return std::make_unique<BoolLiteral>(e.EvalBool(none));
    case FieldType::kInt64:
    case FieldType::kTimestamp: break;
  }
  return std::make_unique<IntLiteral>(e.type(), e.EvalInt(none));
}

template <bool kMax>
ExprPtr MakeMinMax(FieldType type, ExprPtr l, ExprPtr r) {
  switch (type) {
    case FieldType::kDouble:
      return std::make_unique<MinMaxExpr<double, kMax>>(type, std::move(l), std::move(r));
    case FieldType::kString:
      return std::make_unique<MinMaxExpr<absl::string_view, kMax>>(type, std::move(l),
                                                                   std::move(r));
    case FieldType::kBool:
      return std::make_unique<MinMaxExpr<bool, kMax>>(type, std::move(l), std::move(r));
    default: return std::make_unique<MinMaxExpr<int64_t, kMax>>(type, std::move(l), std::move(r));
  }
}

// Converts `n` to double when it is integral.
ExprPtr ToDoubleNode(ExprPtr e) {
  if (e->type() == FieldType::kDouble) return e;
  if (dynamic_cast<const IntLiteral*>(e.get()) != nullptr) {
    return std::make_unique<DoubleLiteral>(static_cast<double>(e->EvalInt(NoRecord())));
  }
  return std::make_unique<IntToDouble>(std::move(e));
}

ExprPtr ToStringNode(ExprPtr e) {
  if (e->type() == FieldType::kString) return e;
  return std::make_unique<ToStringExpr>(std::move(e));
}

// The common type of two operands for if/min/max/comparison, or nullopt-like false.
// Numbers promote: any double -> double; int64 with timestamp -> int64.
bool UnifyTypes(FieldType a, FieldType b, FieldType* out) {
  if (a == b) {
    *out = a;
    return true;
  }
  if (IsNumeric(a) && IsNumeric(b)) {
    *out = (a == FieldType::kDouble || b == FieldType::kDouble) ? FieldType::kDouble
                                                                 : FieldType::kInt64;
    return true;
  }
  return false;
}

// Converts `e` (already unifiable with `type`) for use as `type`.
ExprPtr Coerce(ExprPtr e, FieldType type) {
  if (type == FieldType::kDouble) return ToDoubleNode(std::move(e));
  return e;
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, const Schema& schema)
      : tokens_(std::move(tokens)), schema_(schema) {}

  absl::StatusOr<ExprPtr> Run() {
    if (Peek().kind == TokKind::kEnd) return ErrorAt(Peek().column, "empty expression");
    SLUICE_ASSIGN_OR_RETURN(Node n, ParseOr());
    if (Peek().kind != TokKind::kEnd) {
      return ErrorAt(Peek().column,
                     absl::StrCat("unexpected ", DescribeToken(Peek()), " after expression"));
    }
    return std::move(n.expr);
  }

 private:
  // Bounds parser recursion so that "((((..." cannot overflow the stack.
  class DepthGuard {
   public:
    explicit DepthGuard(int* depth) : depth_(depth) { ++*depth_; }
    ~DepthGuard() { --*depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;
    bool exceeded() const { return *depth_ > kMaxParseDepth; }

   private:
    int* depth_;
  };

  const Token& Peek(size_t ahead = 0) const {
    size_t i = std::min(pos_ + ahead, tokens_.size() - 1);
    return tokens_[i];
  }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool IsOp(absl::string_view op, size_t ahead = 0) const {
    const Token& t = Peek(ahead);
    return t.kind == TokKind::kOp && t.text == op;
  }
  bool IsKeyword(absl::string_view word) const {
    return Peek().kind == TokKind::kIdent && Peek().text == word;
  }
  absl::Status Unexpected() const {
    return ErrorAt(Peek().column, absl::StrCat("unexpected ", DescribeToken(Peek())));
  }

  // Wraps a finished node, enforcing the tree-height limit; a `constant` one (all its operands
  // are) becomes a literal, computed here once, unless it may be null.
  absl::StatusOr<Node> Make(ExprPtr e, int column, int child_depth, bool constant = false) {
    if (child_depth + 1 > kMaxTreeDepth) {
      return ErrorAt(column, absl::StrCat("expression has more than ", kMaxTreeDepth,
                                          " levels of operators (split it up)"));
    }
    if (constant && !e->nullable()) e = Fold(*e);
    return Node{std::move(e), column, child_depth + 1, constant};
  }

  absl::Status RequireBool(const Node& n, absl::string_view op, int op_column) {
    if (n.type() == FieldType::kBool) return absl::OkStatus();
    return ErrorAt(op_column, absl::StrCat("operator '", op, "' needs bool operands, got ",
                                           TypeName(n.type())));
  }

  absl::StatusOr<Node> ParseOr() {
    SLUICE_ASSIGN_OR_RETURN(Node l, ParseAnd());
    while (IsKeyword("or") || IsOp("||")) {
      const Token& op = Next();
      SLUICE_ASSIGN_OR_RETURN(Node r, ParseAnd());
      SLUICE_RETURN_IF_ERROR(RequireBool(l, op.text, op.column));
      SLUICE_RETURN_IF_ERROR(RequireBool(r, op.text, op.column));
      int depth = std::max(l.depth, r.depth);
      SLUICE_ASSIGN_OR_RETURN(
          l, Make(std::make_unique<OrExpr>(std::move(l.expr), std::move(r.expr)), l.column, depth,
                  l.constant && r.constant));
    }
    return l;
  }

  absl::StatusOr<Node> ParseAnd() {
    SLUICE_ASSIGN_OR_RETURN(Node l, ParseNot());
    while (IsKeyword("and") || IsOp("&&")) {
      const Token& op = Next();
      SLUICE_ASSIGN_OR_RETURN(Node r, ParseNot());
      SLUICE_RETURN_IF_ERROR(RequireBool(l, op.text, op.column));
      SLUICE_RETURN_IF_ERROR(RequireBool(r, op.text, op.column));
      int depth = std::max(l.depth, r.depth);
      SLUICE_ASSIGN_OR_RETURN(
          l,
          Make(std::make_unique<AndExpr>(std::move(l.expr), std::move(r.expr)), l.column, depth,
               l.constant && r.constant));
    }
    return l;
  }

  absl::StatusOr<Node> ParseNot() {
    if (!IsKeyword("not") && !IsOp("!")) return ParseComparison();
    DepthGuard guard(&parse_depth_);
    const Token& op = Next();
    if (guard.exceeded()) return TooDeep(op.column);
    SLUICE_ASSIGN_OR_RETURN(Node n, ParseNot());
    SLUICE_RETURN_IF_ERROR(RequireBool(n, op.text, op.column));
    return Make(std::make_unique<NotExpr>(std::move(n.expr)), op.column, n.depth, n.constant);
  }

  absl::StatusOr<Node> ParseComparison() {
    SLUICE_ASSIGN_OR_RETURN(Node l, ParseAdditive());
    while (Peek().kind == TokKind::kOp &&
           (Peek().text == "==" || Peek().text == "!=" || Peek().text == "<" ||
            Peek().text == "<=" || Peek().text == ">" || Peek().text == ">=")) {
      const Token& op = Next();
      SLUICE_ASSIGN_OR_RETURN(Node r, ParseAdditive());
      FieldType t;
      if (!UnifyTypes(l.type(), r.type(), &t)) {
        return ErrorAt(op.column, absl::StrCat("cannot compare ", TypeName(l.type()), " with ",
                                               TypeName(r.type())));
      }
      ExprPtr a = Coerce(std::move(l.expr), t);
      ExprPtr b = Coerce(std::move(r.expr), t);
      ExprPtr e;
      const std::string& o = op.text;
      if (o == "==") {
        e = MakeCompare<std::equal_to<>>(t, std::move(a), std::move(b));
      } else if (o == "!=") {
        e = MakeCompare<std::not_equal_to<>>(t, std::move(a), std::move(b));
      } else if (o == "<") {
        e = MakeCompare<std::less<>>(t, std::move(a), std::move(b));
      } else if (o == "<=") {
        e = MakeCompare<std::less_equal<>>(t, std::move(a), std::move(b));
      } else if (o == ">") {
        e = MakeCompare<std::greater<>>(t, std::move(a), std::move(b));
      } else {
        e = MakeCompare<std::greater_equal<>>(t, std::move(a), std::move(b));
      }
      SLUICE_ASSIGN_OR_RETURN(l, Make(std::move(e), l.column, std::max(l.depth, r.depth),
                                      l.constant && r.constant));
    }
    return l;
  }

  // Type-checks and builds `l op r` for + - * / %.
  absl::StatusOr<Node> Arith(const Token& op, Node l, Node r) {
    const FieldType lt = l.type();
    const FieldType rt = r.type();
    const int depth = std::max(l.depth, r.depth);
    const bool constant = l.constant && r.constant;
    const char c = op.text[0];
    if (c == '+' && lt == FieldType::kString && rt == FieldType::kString) {
      std::vector<ExprPtr> parts;
      parts.push_back(std::move(l.expr));
      parts.push_back(std::move(r.expr));
      return Make(std::make_unique<ConcatExpr>(std::move(parts)), l.column, depth, constant);
    }
    if (!IsNumeric(lt) || !IsNumeric(rt)) {
      std::string hint;
      if (c == '+' && (lt == FieldType::kString || rt == FieldType::kString)) {
        hint = " (use concat() or to_string())";
      }
      return ErrorAt(op.column, absl::StrCat("cannot apply '", op.text, "' to ", TypeName(lt),
                                             " and ", TypeName(rt), hint));
    }
    ExprPtr e;
    if (lt == FieldType::kDouble || rt == FieldType::kDouble) {
      ExprPtr a = ToDoubleNode(std::move(l.expr));
      ExprPtr b = ToDoubleNode(std::move(r.expr));
      switch (c) {
        case '+': e = MakeDoubleArith<AddOp>(std::move(a), std::move(b)); break;
        case '-': e = MakeDoubleArith<SubOp>(std::move(a), std::move(b)); break;
        case '*': e = MakeDoubleArith<MulOp>(std::move(a), std::move(b)); break;
        case '/': e = MakeDoubleArith<DivOp>(std::move(a), std::move(b)); break;
        default: e = MakeDoubleArith<ModOp>(std::move(a), std::move(b)); break;
      }
    } else {
      // timestamp +- int64 and int64 + timestamp stay timestamps; all else is int64.
      const bool lts = lt == FieldType::kTimestamp;
      const bool rts = rt == FieldType::kTimestamp;
      FieldType type = FieldType::kInt64;
      if ((c == '+' && lts != rts) || (c == '-' && lts && !rts)) type = FieldType::kTimestamp;
      ExprPtr a = std::move(l.expr);
      ExprPtr b = std::move(r.expr);
      switch (c) {
        case '+': e = MakeIntArith<AddOp>(type, std::move(a), std::move(b)); break;
        case '-': e = MakeIntArith<SubOp>(type, std::move(a), std::move(b)); break;
        case '*': e = MakeIntArith<MulOp>(type, std::move(a), std::move(b)); break;
        case '/': e = MakeIntArith<DivOp>(type, std::move(a), std::move(b)); break;
        default: e = MakeIntArith<ModOp>(type, std::move(a), std::move(b)); break;
      }
    }
    return Make(std::move(e), l.column, depth, constant);
  }

  absl::StatusOr<Node> ParseAdditive() {
    SLUICE_ASSIGN_OR_RETURN(Node l, ParseTerm());
    while (IsOp("+") || IsOp("-")) {
      const Token& op = Next();
      SLUICE_ASSIGN_OR_RETURN(Node r, ParseTerm());
      SLUICE_ASSIGN_OR_RETURN(l, Arith(op, std::move(l), std::move(r)));
    }
    return l;
  }

  absl::StatusOr<Node> ParseTerm() {
    SLUICE_ASSIGN_OR_RETURN(Node l, ParseUnary());
    while (IsOp("*") || IsOp("/") || IsOp("%")) {
      const Token& op = Next();
      SLUICE_ASSIGN_OR_RETURN(Node r, ParseUnary());
      SLUICE_ASSIGN_OR_RETURN(l, Arith(op, std::move(l), std::move(r)));
    }
    return l;
  }

  absl::StatusOr<Node> ParseUnary() {
    if (!IsOp("-") && !IsOp("+")) return ParsePrimary();
    DepthGuard guard(&parse_depth_);
    const Token& op = Next();
    if (guard.exceeded()) return TooDeep(op.column);
    const bool minus = op.text == "-";
    // A sign directly before a number literal is part of the literal; this is also the only
    // way to write INT64_MIN.
    if (Peek().kind == TokKind::kInt) {
      const Token& num = Next();
      if (num.int_value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) && !minus) {
        return ErrorAt(num.column, absl::StrCat("integer out of range: ", num.text));
      }
      int64_t v = minus ? WrapNeg(static_cast<int64_t>(num.int_value))
                        : static_cast<int64_t>(num.int_value);
      return Node{std::make_unique<IntLiteral>(FieldType::kInt64, v), op.column, 1, true};
    }
    if (Peek().kind == TokKind::kDouble) {
      const Token& num = Next();
      double v = minus ? -num.double_value : num.double_value;
      return Node{std::make_unique<DoubleLiteral>(v), op.column, 1, true};
    }
    SLUICE_ASSIGN_OR_RETURN(Node n, ParseUnary());
    if (!IsNumeric(n.type())) {
      return ErrorAt(op.column, absl::StrCat("unary '", op.text, "' needs a number, got ",
                                             TypeName(n.type())));
    }
    if (!minus) {
      n.column = op.column;
      return n;
    }
    if (n.type() == FieldType::kDouble) {
      return Make(std::make_unique<DoubleNeg>(std::move(n.expr)), op.column, n.depth, n.constant);
    }
    return Make(std::make_unique<IntNeg>(std::move(n.expr)), op.column, n.depth, n.constant);
  }

  absl::StatusOr<Node> FieldNode(const Token& t) {
    int index = schema_.IndexOf(t.text);
    if (index < 0) {
      std::vector<absl::string_view> names;
      for (const Field& f : schema_.fields()) names.push_back(f.name);
      std::string known = names.empty() ? std::string("schema has no fields")
                                        : absl::StrCat("fields: ", absl::StrJoin(names, ", "));
      return ErrorAt(t.column, absl::StrCat("unknown field '", t.text, "' (", known, ")"));
    }
    const Field& f = schema_.field(index);
    return Node{std::make_unique<FieldRef>(f.type, f.nullable, index), t.column, 1};
  }

  absl::StatusOr<Node> ParsePrimary() {
    const Token& t = Peek();
    switch (t.kind) {
      case TokKind::kInt: {
        Next();
        if (t.int_value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          return ErrorAt(t.column, absl::StrCat("integer out of range: ", t.text));
        }
        return Node{std::make_unique<IntLiteral>(FieldType::kInt64,
                                                 static_cast<int64_t>(t.int_value)),
                    t.column, 1, true};
      }
      case TokKind::kDouble:
        Next();
        return Node{std::make_unique<DoubleLiteral>(t.double_value), t.column, 1, true};
      case TokKind::kString:
        Next();
        return Node{std::make_unique<StringLiteral>(t.text), t.column, 1, true};
      case TokKind::kQuotedIdent:
        Next();
        return FieldNode(t);
      case TokKind::kIdent: {
        if (t.text == "true" || t.text == "false") {
          Next();
          return Node{std::make_unique<BoolLiteral>(t.text == "true"), t.column, 1, true};
        }
        if (t.text == "and" || t.text == "or" || t.text == "not") return Unexpected();
        if (IsOp("(", 1)) return ParseCall();
        Next();
        return FieldNode(t);
      }
      case TokKind::kOp:
        if (t.text == "(") {
          DepthGuard guard(&parse_depth_);
          Next();
          if (guard.exceeded()) return TooDeep(t.column);
          SLUICE_ASSIGN_OR_RETURN(Node n, ParseOr());
          if (!IsOp(")")) {
            return ErrorAt(Peek().column,
                           absl::StrCat("expected ')' but found ", DescribeToken(Peek())));
          }
          Next();
          n.column = t.column;
          return n;
        }
        return Unexpected();
      case TokKind::kEnd: return Unexpected();
    }
    return Unexpected();
  }

  absl::StatusOr<Node> ParseCall() {
    const Token& name = Next();
    const FunctionInfo* fn = FindFunction(name.text);
    if (fn == nullptr) {
      std::vector<absl::string_view> names;
      for (const FunctionInfo& f : kFunctions) names.push_back(f.name);
      return ErrorAt(name.column, absl::StrCat("unknown function '", name.text, "' (functions: ",
                                               absl::StrJoin(names, ", "), ")"));
    }
    DepthGuard guard(&parse_depth_);
    if (guard.exceeded()) return TooDeep(name.column);
    Next();  // '('
    std::vector<Node> args;
    if (!IsOp(")")) {
      while (true) {
        SLUICE_ASSIGN_OR_RETURN(Node a, ParseOr());
        args.push_back(std::move(a));
        if (IsOp(",")) {
          Next();
          continue;
        }
        if (IsOp(")")) break;
        return ErrorAt(Peek().column,
                       absl::StrCat("expected ',' or ')' but found ", DescribeToken(Peek())));
      }
    }
    Next();  // ')'
    const int n = static_cast<int>(args.size());
    if (n < fn->min_args || (fn->max_args >= 0 && n > fn->max_args)) {
      std::string expected;
      if (fn->max_args < 0) {
        expected = absl::StrCat("at least ", fn->min_args);
      } else if (fn->min_args == fn->max_args) {
        expected = absl::StrCat(fn->min_args);
      } else {
        expected = absl::StrCat(fn->min_args, " to ", fn->max_args);
      }
      return ErrorAt(name.column,
                     absl::StrCat(fn->name, "() takes ", expected,
                                  fn->max_args == 1 && fn->min_args == 1 ? " argument" : " arguments",
                                  ", got ", n));
    }
    return BuildCall(fn->name, name.column, std::move(args));
  }

  absl::Status ArgError(absl::string_view fn, size_t i, const Node& arg,
                        absl::string_view expected) {
    return ErrorAt(arg.column, absl::StrCat("argument ", i + 1, " of ", fn, "() must be ",
                                            expected, ", got ", TypeName(arg.type())));
  }

  absl::Status RequireArg(absl::string_view fn, const std::vector<Node>& args, size_t i,
                          bool (*pred)(FieldType), absl::string_view expected) {
    if (pred(args[i].type())) return absl::OkStatus();
    return ArgError(fn, i, args[i], expected);
  }

  // Whether `n` is written as a literal (its value can be read at compilation from any
  // record); a folded expression (depth above 1) is not.
  static bool IsLiteral(const Node& n) {
    const Expr* e = n.expr.get();
    return n.depth == 1 && (dynamic_cast<const StringLiteral*>(e) != nullptr ||
                            dynamic_cast<const IntLiteral*>(e) != nullptr);
  }
  static bool IsString(FieldType t) { return t == FieldType::kString; }
  static bool IsBool(FieldType t) { return t == FieldType::kBool; }

  absl::StatusOr<Node> BuildCall(absl::string_view fn, int column, std::vector<Node> args) {
    int depth = 0;
    bool constant = true;
    for (const Node& a : args) {
      depth = std::max(depth, a.depth);
      constant = constant && a.constant;
    }
    auto arg = [&](size_t i) { return std::move(args[i].expr); };
    auto done = [&](ExprPtr e) { return Make(std::move(e), column, depth, constant); };
    constexpr absl::string_view kString = "string";
    constexpr absl::string_view kInt = "an integer";
    constexpr absl::string_view kNumber = "a number";

    if (fn == "lower" || fn == "upper") {
      SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, 0, IsString, kString));
      return done(std::make_unique<CaseExpr>(fn == "upper", arg(0)));
    }
    if (fn == "trim") {
      SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, 0, IsString, kString));
      return done(std::make_unique<TrimExpr>(arg(0)));
    }
    if (fn == "length") {
      SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, 0, IsString, kString));
      return done(std::make_unique<LengthExpr>(arg(0)));
    }
    if (fn == "substr") {
      SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, 0, IsString, kString));
      for (size_t i = 1; i < args.size(); ++i) {
        SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, i, IsIntegral, kInt));
      }
      ExprPtr len = args.size() > 2 ? arg(2) : nullptr;
      return done(std::make_unique<SubstrExpr>(arg(0), arg(1), std::move(len)));
    }
    if (fn == "concat") {
      std::vector<ExprPtr> parts;
      for (size_t i = 0; i < args.size(); ++i) parts.push_back(ToStringNode(arg(i)));
      return done(std::make_unique<ConcatExpr>(std::move(parts)));
    }
    if (fn == "contains" || fn == "starts_with" || fn == "ends_with") {
      SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, 0, IsString, kString));
      SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, 1, IsString, kString));
      MatchKind kind = fn == "contains"      ? MatchKind::kContains
                       : fn == "starts_with" ? MatchKind::kStartsWith
                                             : MatchKind::kEndsWith;
      return done(std::make_unique<MatchExpr>(kind, arg(0), arg(1)));
    }
    if (fn == "split_index") {
      SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, 0, IsString, kString));
      SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, 1, IsString, kString));
      SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, 2, IsIntegral, kInt));
      // Arguments known at compilation are checked here; at run time these cases yield null.
      if (IsLiteral(args[1]) && args[1].expr->EvalString(NoRecord()).empty()) {
        return ErrorAt(args[1].column, "argument 2 of split_index() must not be empty");
      }
      if (IsLiteral(args[2]) && args[2].expr->EvalInt(NoRecord()) < 0) {
        return ErrorAt(args[2].column, "argument 3 of split_index() must not be negative");
      }
      return done(std::make_unique<SplitIndexExpr>(arg(0), arg(1), arg(2)));
    }
    if (fn == "count_char") {
      SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, 0, IsString, kString));
      if (!IsLiteral(args[1]) || args[1].type() != FieldType::kString ||
          args[1].expr->EvalString(Record(0)).size() != 1) {
        return ErrorAt(args[1].column,
                       "argument 2 of count_char() must be a one-character string literal");
      }
      const char c = args[1].expr->EvalString(Record(0))[0];
      return done(std::make_unique<CountCharExpr>(arg(0), c));
    }
    if (fn == "hour") {
      if (args[0].type() != FieldType::kTimestamp) {
        return ArgError(fn, 0, args[0], "a timestamp (see to_timestamp())");
      }
      return done(std::make_unique<HourExpr>(arg(0)));
    }
    if (fn == "to_string") return done(ToStringNode(arg(0)));
    if (fn == "to_int") {
      switch (args[0].type()) {
        case FieldType::kInt64: return done(arg(0));
        case FieldType::kTimestamp:
          return done(std::make_unique<Retype>(FieldType::kInt64, arg(0)));
        case FieldType::kDouble:
          return done(std::make_unique<DoubleToIntExpr>(FieldType::kInt64, arg(0)));
        case FieldType::kBool: return done(std::make_unique<BoolToInt>(arg(0)));
        case FieldType::kString: return done(std::make_unique<StringToIntExpr>(arg(0)));
      }
    }
    if (fn == "to_double") {
      switch (args[0].type()) {
        case FieldType::kString: return done(std::make_unique<StringToDoubleExpr>(arg(0)));
        case FieldType::kBool:
          return done(std::make_unique<IntToDouble>(std::make_unique<BoolToInt>(arg(0))));
        default: return done(ToDoubleNode(arg(0)));
      }
    }
    if (fn == "to_timestamp") {
      SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, 0, IsNumeric, kNumber));
      if (args[0].type() == FieldType::kDouble) {
        return done(std::make_unique<DoubleToIntExpr>(FieldType::kTimestamp, arg(0)));
      }
      return done(std::make_unique<Retype>(FieldType::kTimestamp, arg(0)));
    }
    if (fn == "abs") {
      SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, 0, IsNumeric, kNumber));
      if (args[0].type() == FieldType::kDouble) return done(std::make_unique<DoubleAbs>(arg(0)));
      return done(std::make_unique<IntAbs>(arg(0)));
    }
    if (fn == "hash") return done(std::make_unique<HashExpr>(arg(0)));
    if (fn == "is_null") return done(std::make_unique<IsNullExpr>(arg(0)));
    if (fn == "coalesce") {
      FieldType t = args[0].type();
      for (size_t i = 1; i < args.size(); ++i) {
        if (!UnifyTypes(t, args[i].type(), &t)) {
          return ErrorAt(args[i].column,
                         absl::StrCat("coalesce() arguments have different types: ",
                                      TypeName(args[0].type()), " and ", TypeName(args[i].type())));
        }
      }
      std::vector<ExprPtr> parts;
      for (size_t i = 0; i < args.size(); ++i) parts.push_back(Coerce(arg(i), t));
      return done(std::make_unique<CoalesceExpr>(t, std::move(parts)));
    }
    if (fn == "if") {
      SLUICE_RETURN_IF_ERROR(RequireArg(fn, args, 0, IsBool, "bool"));
      FieldType t;
      if (!UnifyTypes(args[1].type(), args[2].type(), &t)) {
        return ErrorAt(args[2].column,
                       absl::StrCat("if() branches have different types: ",
                                    TypeName(args[1].type()), " and ", TypeName(args[2].type())));
      }
      return done(std::make_unique<IfExpr>(t, arg(0), Coerce(arg(1), t), Coerce(arg(2), t)));
    }
    if (fn == "min" || fn == "max") {
      FieldType t;
      if (!UnifyTypes(args[0].type(), args[1].type(), &t)) {
        return ErrorAt(args[1].column,
                       absl::StrCat(fn, "() arguments have different types: ",
                                    TypeName(args[0].type()), " and ", TypeName(args[1].type())));
      }
      ExprPtr a = Coerce(arg(0), t);
      ExprPtr b = Coerce(arg(1), t);
      if (fn == "max") return done(MakeMinMax<true>(t, std::move(a), std::move(b)));
      return done(MakeMinMax<false>(t, std::move(a), std::move(b)));
    }
    return ErrorAt(column, absl::StrCat("unknown function '", fn, "'"));
  }

  const std::vector<Token> tokens_;
  const Schema& schema_;
  size_t pos_ = 0;
  int parse_depth_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Expr>> CompileExpr(absl::string_view text, const Schema& schema) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenizer(text).Run());
  return Parser(std::move(tokens), schema).Run();
}

int ExprErrorColumn(const absl::Status& status) {
  auto payload = status.GetPayload(kColumnPayloadUrl);
  int column = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &column)) return 0;
  return column;
}

namespace {

// Evaluates a nullable `expr` as C++ type T once into value `index` of `out`: its null bit, and
// store(value, result) when it is not null.
template <typename T, typename Store>
void EvalNullableInto(const Expr& expr, const Record& in, Record* out, size_t index, Store store) {
  T x{};
  const bool null = !EvalOrNullAs<T>(expr, in, &x);
  out->SetNullTo(index, null);
  if (!null) store((*out)[index], x);
}

}  // namespace

void EvalInto(const Expr& expr, const Record& in, FieldType out_type, Record* out, size_t index) {
  const int field = expr.FieldIndex();
  if (field >= 0 && (out_type == expr.type() || (IsIntegral(out_type) && IsIntegral(expr.type())))) {
    // A bare field of the output's type: copied without a call.
    if (expr.nullable()) {
      const bool null = in.IsNull(field);
      out->SetNullTo(index, null);
      if (null) return;
    }
    Value& v = (*out)[index];
    const Value& from = in[field];
    switch (out_type) {
      case FieldType::kDouble: v.d = from.d; return;
      case FieldType::kString: v.s.assign(from.s); return;
      default: v.i = from.i; return;
    }
  }
  Value& v = (*out)[index];
  const FieldType t = expr.type();
  if (expr.nullable()) {
    if (t == FieldType::kString && out_type == FieldType::kString) {
      // Value and null in one evaluation.
      absl::string_view s;
      const bool null = !expr.EvalStringOrNull(in, &s);
      out->SetNullTo(index, null);
      if (!null) v.s.assign(s.data(), s.size());
      return;
    }
    // Value and null in one evaluation for the types that need no conversion.
    if (IsIntegral(t) && IsIntegral(out_type)) {
      return EvalNullableInto<int64_t>(expr, in, out, index, [](Value& to, int64_t x) { to.i = x; });
    }
    if (t == FieldType::kDouble && out_type == FieldType::kDouble) {
      return EvalNullableInto<double>(expr, in, out, index, [](Value& to, double x) { to.d = x; });
    }
    if (t == FieldType::kBool && out_type == FieldType::kBool) {
      return EvalNullableInto<bool>(expr, in, out, index, [](Value& to, bool x) { to.i = x ? 1 : 0; });
    }
    const bool null = expr.IsNull(in);
    out->SetNullTo(index, null);
    if (null) return;
  }
  switch (out_type) {
    case FieldType::kString: {
      if (t == FieldType::kString) {
        absl::string_view s = expr.EvalString(in);
        v.s.assign(s.data(), s.size());
        return;
      }
      char buf[kNumBufSize];
      absl::string_view s;
      if (t == FieldType::kDouble) {
        s = FormatDouble(expr.EvalDouble(in), buf);
      } else if (t == FieldType::kBool) {
        s = BoolText(expr.EvalBool(in));
      } else {
        s = FormatInt(expr.EvalInt(in), buf);
      }
      v.s.assign(s.data(), s.size());
      return;
    }
    case FieldType::kDouble:
      switch (t) {
        case FieldType::kDouble: v.d = expr.EvalDouble(in); return;
        case FieldType::kString: v.d = StringToDouble(expr.EvalString(in)); return;
        case FieldType::kBool: v.d = expr.EvalBool(in) ? 1 : 0; return;
        default: v.d = static_cast<double>(expr.EvalInt(in)); return;
      }
    case FieldType::kBool:
      switch (t) {
        case FieldType::kDouble: v.i = expr.EvalDouble(in) != 0 ? 1 : 0; return;
        case FieldType::kString: v.i = expr.EvalString(in) == "true" ? 1 : 0; return;
        case FieldType::kBool: v.i = expr.EvalBool(in) ? 1 : 0; return;
        default: v.i = expr.EvalInt(in) != 0 ? 1 : 0; return;
      }
    case FieldType::kInt64:
    case FieldType::kTimestamp:
      switch (t) {
        case FieldType::kDouble: v.i = DoubleToInt(expr.EvalDouble(in)); return;
        case FieldType::kString: v.i = StringToInt(expr.EvalString(in)); return;
        case FieldType::kBool: v.i = expr.EvalBool(in) ? 1 : 0; return;
        default: v.i = expr.EvalInt(in); return;
      }
  }
}

}  // namespace sluice::plan
