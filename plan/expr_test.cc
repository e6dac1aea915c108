#include "plan/expr.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cmath>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/key_groups.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

// Counts heap allocations so a test can prove evaluation allocates nothing once warm.
static std::atomic<int64_t> g_allocations{0};

__attribute__((noinline)) void* operator new(size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
__attribute__((noinline)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace sluice::plan {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

Schema TestSchema() {
  return Schema({{"id", FieldType::kInt64},
                 {"price", FieldType::kDouble},
                 {"name", FieldType::kString},
                 {"active", FieldType::kBool},
                 {"ts", FieldType::kTimestamp},
                 {"my field", FieldType::kString}});
}

Record TestRecord() {
  Record r(6);
  r.SetInt(0, 42);
  r.SetDouble(1, 9.5);
  r.SetString(2, "  Bob  ");
  r.SetBool(3, true);
  r.SetInt(4, 1700000000000);
  r.SetString(5, "spaced");
  return r;
}

class ExprTest : public ::testing::Test {
 protected:
  std::unique_ptr<Expr> Compile(const std::string& text) {
    auto e = CompileExpr(text, schema_);
    EXPECT_TRUE(e.ok()) << text << ": " << e.status();
    return e.ok() ? std::move(e).value() : nullptr;
  }
  int64_t Int(const std::string& text) {
    auto e = Compile(text);
    if (e == nullptr) return -999999;
    EXPECT_TRUE(IsIntegral(e->type())) << text;
    return e->EvalInt(record_);
  }
  double Double(const std::string& text) {
    auto e = Compile(text);
    if (e == nullptr) return -999999;
    EXPECT_EQ(e->type(), FieldType::kDouble) << text;
    return e->EvalDouble(record_);
  }
  bool Bool(const std::string& text) {
    auto e = Compile(text);
    if (e == nullptr) return false;
    EXPECT_EQ(e->type(), FieldType::kBool) << text;
    return e->EvalBool(record_);
  }
  std::string String(const std::string& text) {
    auto e = Compile(text);
    if (e == nullptr) return "<error>";
    EXPECT_EQ(e->type(), FieldType::kString) << text;
    return std::string(e->EvalString(record_));
  }
  absl::Status Error(const std::string& text) { return CompileExpr(text, schema_).status(); }

  Schema schema_ = TestSchema();
  Record record_ = TestRecord();
};

TEST_F(ExprTest, ArithmeticAndPrecedence) {
  EXPECT_EQ(Int("1+2*3"), 7);
  EXPECT_EQ(Int("(1+2)*3"), 9);
  EXPECT_EQ(Int("2 - 3 - 4"), -5);
  EXPECT_EQ(Int("-id"), -42);
  EXPECT_EQ(Int("- -id"), 42);
  EXPECT_EQ(Int("+id"), 42);
  EXPECT_EQ(Int("7/2"), 3);
  EXPECT_DOUBLE_EQ(Double("7.0/2"), 3.5);
  EXPECT_DOUBLE_EQ(Double(".5 + 1"), 1.5);
  EXPECT_DOUBLE_EQ(Double("1e3"), 1000.0);
  EXPECT_EQ(Int("5%0"), 0);
  EXPECT_EQ(Int("5/0"), 0);
  EXPECT_EQ(Int("id / (id - 42)"), 0);
  EXPECT_EQ(Int("-7 % 3"), -1);
  EXPECT_EQ(Int("10 - 2 * 3 + 8 / 4"), 6);
  EXPECT_DOUBLE_EQ(Double("price * 2"), 19.0);
  EXPECT_DOUBLE_EQ(Double("id + price"), 51.5);
  EXPECT_DOUBLE_EQ(Double("-price"), -9.5);
  EXPECT_DOUBLE_EQ(Double("7.5 % 2"), 1.5);
  EXPECT_EQ(String("'a' + 'b' + name"), "ab  Bob  ");
}

TEST_F(ExprTest, IntegerEdgeCasesWrapInsteadOfCrashing) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(Int("-9223372036854775808"), kMin);
  EXPECT_EQ(Int("9223372036854775807"), kMax);
  EXPECT_EQ(Int("9223372036854775807 + 1"), kMin);
  EXPECT_EQ(Int("-9223372036854775808 / -1"), kMin);
  EXPECT_EQ(Int("-9223372036854775808 % -1"), 0);
  EXPECT_EQ(Int("abs(-9223372036854775808)"), kMin);
  EXPECT_THAT(Error("9223372036854775808"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("column 1: integer out of range")));
  EXPECT_THAT(Error("1e999"), StatusIs(absl::StatusCode::kInvalidArgument,
                                       StartsWith("column 1: number out of range")));
}

// The rule README.md and expr.h document: integer arithmetic never fails and never traps.
TEST_F(ExprTest, DivisionFollowsTheDocumentedRule) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(Int("-7 / 2"), -3);  // truncates toward zero
  EXPECT_EQ(Int("-7 % 2"), -1);  // the sign of the dividend
  EXPECT_EQ(Int("7 % -2"), 1);
  EXPECT_EQ(Int("7 / 0"), 0);
  EXPECT_EQ(Int("7 % 0"), 0);
  EXPECT_EQ(Int("id / 0"), 0);
  EXPECT_EQ(Int("-9223372036854775808 / -1"), kMin);
  EXPECT_EQ(Int("-9223372036854775808 % -1"), 0);
  EXPECT_EQ(Int("9223372036854775807 * 2"), -2);  // wraps
  EXPECT_EQ(Double("1.0 / 0"), std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(Double("0.0 / 0")));
}

TEST_F(ExprTest, ResultTypes) {
  EXPECT_EQ(Compile("1 + 2")->type(), FieldType::kInt64);
  EXPECT_EQ(Compile("1 + 2.0")->type(), FieldType::kDouble);
  EXPECT_EQ(Compile("ts + 1000")->type(), FieldType::kTimestamp);
  EXPECT_EQ(Compile("1000 + ts")->type(), FieldType::kTimestamp);
  EXPECT_EQ(Compile("ts - 1000")->type(), FieldType::kTimestamp);
  EXPECT_EQ(Compile("ts - ts")->type(), FieldType::kInt64);
  EXPECT_EQ(Compile("ts / 1000")->type(), FieldType::kInt64);
  EXPECT_EQ(Compile("id < 2")->type(), FieldType::kBool);
  EXPECT_EQ(Compile("to_string(id)")->type(), FieldType::kString);
  EXPECT_EQ(Compile("to_timestamp(id)")->type(), FieldType::kTimestamp);
  EXPECT_EQ(Compile("if(active, id, ts)")->type(), FieldType::kInt64);
  EXPECT_EQ(Compile("if(active, id, price)")->type(), FieldType::kDouble);
  EXPECT_EQ(Compile("max(ts, ts)")->type(), FieldType::kTimestamp);
  EXPECT_EQ(Int("ts + 1000"), 1700000001000);
  EXPECT_EQ(Int("ts - (ts - 5)"), 5);
}

TEST_F(ExprTest, Comparisons) {
  EXPECT_TRUE(Bool("1 < 2"));
  EXPECT_FALSE(Bool("2 < 2"));
  EXPECT_TRUE(Bool("2 <= 2"));
  EXPECT_TRUE(Bool("3 > 2"));
  EXPECT_TRUE(Bool("3 >= 3"));
  EXPECT_TRUE(Bool("3 == 3"));
  EXPECT_TRUE(Bool("3 != 4"));
  EXPECT_TRUE(Bool("2.5 >= 2"));
  EXPECT_TRUE(Bool("id == 42.0"));
  EXPECT_TRUE(Bool("price > id / 5"));
  EXPECT_TRUE(Bool("ts > 1000"));
  EXPECT_TRUE(Bool("ts > id"));
  EXPECT_TRUE(Bool("name == '  Bob  '"));
  EXPECT_TRUE(Bool("'a' < 'b'"));
  EXPECT_FALSE(Bool("\"b\" < 'a'"));
  EXPECT_TRUE(Bool("true == true"));
  EXPECT_TRUE(Bool("active != false"));
  EXPECT_TRUE(Bool("1 < 2 == true"));
}

TEST_F(ExprTest, BooleanLogic) {
  EXPECT_TRUE(Bool("true and true"));
  EXPECT_FALSE(Bool("true and false"));
  EXPECT_TRUE(Bool("false or true"));
  EXPECT_FALSE(Bool("not true"));
  EXPECT_TRUE(Bool("!false"));
  EXPECT_TRUE(Bool("true && !false || false"));
  // and binds tighter than or.
  EXPECT_TRUE(Bool("true or false and false"));
  EXPECT_FALSE(Bool("(true or false) and false"));
  // not binds looser than comparison.
  EXPECT_TRUE(Bool("not id == 1"));
  EXPECT_TRUE(Bool("not not active"));
  EXPECT_TRUE(Bool("id > 40 and price < 10 and active"));
}

TEST_F(ExprTest, ShortCircuit) {
  // The right side would be false/true if evaluated; the results show it is not needed.
  EXPECT_FALSE(Bool("false and 1 / 0 == 0"));
  EXPECT_TRUE(Bool("true or 1 / 0 == 1"));
  EXPECT_TRUE(Bool("id == 0 or 100 / id == 2"));
  EXPECT_EQ(Int("if(id == 42, 1, 1 / 0)"), 1);
  EXPECT_EQ(String("if(false, upper(name), 'x')"), "x");
}

TEST_F(ExprTest, StringFunctions) {
  EXPECT_EQ(String("lower('AbC')"), "abc");
  EXPECT_EQ(String("upper(name)"), "  BOB  ");
  EXPECT_EQ(String("trim(name)"), "Bob");
  EXPECT_EQ(Int("length(name)"), 7);
  EXPECT_EQ(Int("length('')"), 0);
  EXPECT_EQ(String("substr('hello', 1, 3)"), "ell");
  EXPECT_EQ(String("substr('hello', 3)"), "lo");
  EXPECT_EQ(String("substr('hello', 10)"), "");
  EXPECT_EQ(String("substr('hello', -2, 2)"), "he");
  EXPECT_EQ(String("substr('hello', 2, -1)"), "");
  EXPECT_EQ(String("substr('hello', 2, 100)"), "llo");
  EXPECT_EQ(String("concat('a', 'b', 'c')"), "abc");
  EXPECT_EQ(String("concat('id=', id, ' p=', price, ' ', active)"), "id=42 p=9.5 true");
  EXPECT_TRUE(Bool("contains(name, 'Bo')"));
  EXPECT_FALSE(Bool("contains(name, 'bo')"));
  EXPECT_TRUE(Bool("starts_with('hello', 'he')"));
  EXPECT_TRUE(Bool("ends_with('hello', 'llo')"));
  EXPECT_FALSE(Bool("ends_with('hello', 'he')"));
  EXPECT_EQ(String("'it\\'s' + \"\\n\""), "it's\n");
}

TEST_F(ExprTest, SplitIndexCountCharAndHour) {
  EXPECT_EQ(String("split_index('a/b//c', '/', 0)"), "a");
  EXPECT_EQ(String("split_index('a/b//c', '/', 2)"), "");
  EXPECT_EQ(String("split_index('a/b//c', '/', 3)"), "c");
  EXPECT_EQ(String("split_index('x&id=7&y&id=8', '&id=', 1)"), "7&y");
  EXPECT_EQ(String("split_index(split_index('q=1&id=7&y=2', '&id=', 1), '&', 0)"), "7");
  EXPECT_EQ(String("split_index('', ',', 0)"), "");
  EXPECT_EQ(String("split_index('abc', ',', 0)"), "abc");
  EXPECT_EQ(String("split_index(name, 'o', id - 41)"), "b  ");
  EXPECT_EQ(Int("count_char('accbc', 'c')"), 3);
  EXPECT_EQ(Int("count_char(name, ' ')"), 4);
  EXPECT_EQ(Int("count_char('', 'c')"), 0);
  EXPECT_EQ(Int("hour(ts)"), 22);  // 1700000000000 is 2023-11-14T22:13:20Z
  EXPECT_EQ(Int("hour(to_timestamp(0))"), 0);
  EXPECT_EQ(Int("hour(to_timestamp(3600000 * 24 * 3 + 3600000 * 5 - 1))"), 4);
  EXPECT_EQ(Int("hour(to_timestamp(-1))"), 23);
  EXPECT_EQ(Int("hour(to_timestamp(-3600000 * 25))"), 23);
}

TEST_F(ExprTest, SplitIndexIsNullPastTheLastPiece) {
  auto past = Compile("split_index('a/b', '/', 2)");
  ASSERT_NE(past, nullptr);
  EXPECT_TRUE(past->nullable());
  EXPECT_TRUE(past->IsNull(record_));
  auto last = Compile("split_index('a/b', '/', 1)");
  ASSERT_NE(last, nullptr);
  EXPECT_FALSE(last->IsNull(record_));
  // Known only at run time: a negative index or an empty delimiter is null, not an error.
  auto negative = Compile("split_index('a/b', '/', id - 43)");
  ASSERT_NE(negative, nullptr);
  EXPECT_TRUE(negative->IsNull(record_));
  auto empty = Compile("split_index('a/b', substr(name, 0, 0), 0)");
  ASSERT_NE(empty, nullptr);
  EXPECT_TRUE(empty->IsNull(record_));
  EXPECT_TRUE(Bool("is_null(split_index(name, 'B', 2))"));
  EXPECT_EQ(String("coalesce(split_index(name, 'B', 2), 'none')"), "none");
}

TEST_F(ExprTest, SplitIndexCountCharAndHourRefuseBadArguments) {
  EXPECT_THAT(Error("split_index(name, '', 1)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 19: argument 2 of split_index() must not be empty"));
  EXPECT_THAT(Error("split_index(name, '/', -1)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 24: argument 3 of split_index() must not be negative"));
  EXPECT_THAT(Error("split_index(name, '/', 'x')"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 24: argument 3 of split_index() must be an integer, got string"));
  EXPECT_THAT(Error("split_index(id, '/', 1)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 13: argument 1 of split_index() must be string, got int64"));
  EXPECT_THAT(Error("split_index(name, '/')"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 1: split_index() takes 3 arguments, got 2"));
  EXPECT_THAT(Error("count_char(name, 'ab')"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 18: argument 2 of count_char() must be a one-character string "
                       "literal"));
  EXPECT_THAT(Error("count_char(name, name)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("column 18: argument 2 of count_char() must be a one-character")));
  EXPECT_THAT(Error("count_char(id, 'c')"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 12: argument 1 of count_char() must be string, got int64"));
  EXPECT_THAT(Error("hour(id)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 6: argument 1 of hour() must be a timestamp (see to_timestamp()), "
                       "got int64"));
}

TEST_F(ExprTest, ConversionFunctions) {
  EXPECT_EQ(String("to_string(42)"), "42");
  EXPECT_EQ(String("to_string(-7)"), "-7");
  EXPECT_EQ(String("to_string(2.5)"), "2.5");
  EXPECT_EQ(String("to_string(0.1)"), "0.1");
  EXPECT_EQ(String("to_string(1e300)"), "1e+300");
  EXPECT_EQ(String("to_string(true)"), "true");
  EXPECT_EQ(String("to_string(name)"), "  Bob  ");
  EXPECT_EQ(String("to_string(ts)"), "1700000000000");
  EXPECT_EQ(Int("to_int('123')"), 123);
  EXPECT_EQ(Int("to_int(' -5 ')"), -5);
  EXPECT_EQ(Int("to_int('3.9')"), 3);
  EXPECT_EQ(Int("to_int('nope')"), 0);
  EXPECT_EQ(Int("to_int(3.9)"), 3);
  EXPECT_EQ(Int("to_int(-3.9)"), -3);
  EXPECT_EQ(Int("to_int(1e300)"), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(Int("to_int(true)"), 1);
  EXPECT_EQ(Int("to_int(ts)"), 1700000000000);
  EXPECT_EQ(Compile("to_int(ts)")->type(), FieldType::kInt64);
  EXPECT_DOUBLE_EQ(Double("to_double('2.25')"), 2.25);
  EXPECT_DOUBLE_EQ(Double("to_double(id)"), 42.0);
  EXPECT_DOUBLE_EQ(Double("to_double(false)"), 0.0);
  EXPECT_EQ(Int("to_timestamp(1000)"), 1000);
  EXPECT_EQ(Int("to_timestamp(1.5)"), 1);
  EXPECT_EQ(Int("abs(-3)"), 3);
  EXPECT_DOUBLE_EQ(Double("abs(-2.5)"), 2.5);
  EXPECT_EQ(Int("min(3, 5)"), 3);
  EXPECT_EQ(Int("max(3, 5)"), 5);
  EXPECT_DOUBLE_EQ(Double("max(id, price)"), 42.0);
  EXPECT_EQ(String("min('pear', 'apple')"), "apple");
  EXPECT_EQ(String("max(upper('a'), lower('B'))"), "b");
  EXPECT_EQ(Int("if(active, 1, 2)"), 1);
  EXPECT_DOUBLE_EQ(Double("if(not active, 1, 2.5)"), 2.5);
}

TEST_F(ExprTest, HashIsStableAndNonNegative) {
  constexpr uint64_t kMask = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(Int("hash(42)"), static_cast<int64_t>(HashInt64(42) & kMask));
  EXPECT_EQ(Int("hash(id)"), Int("hash(42)"));
  EXPECT_EQ(Int("hash('abc')"), static_cast<int64_t>(HashBytes("abc") & kMask));
  EXPECT_EQ(Int("hash(0.0)"), Int("hash(-0.0)"));
  EXPECT_NE(Int("hash(1)"), Int("hash(2)"));
  for (const char* text : {"hash(-1)", "hash(name)", "hash(price)", "hash(active)", "hash(ts)"}) {
    EXPECT_GE(Int(text), 0) << text;
  }
}

TEST_F(ExprTest, FieldReferencesOfEveryType) {
  EXPECT_EQ(Int("id"), 42);
  EXPECT_DOUBLE_EQ(Double("price"), 9.5);
  EXPECT_EQ(String("name"), "  Bob  ");
  EXPECT_TRUE(Bool("active"));
  EXPECT_EQ(Int("ts"), 1700000000000);
  EXPECT_EQ(Compile("ts")->type(), FieldType::kTimestamp);
  EXPECT_EQ(String("`my field`"), "spaced");
  EXPECT_EQ(String("`name`"), "  Bob  ");

  EXPECT_EQ(Compile("id")->FieldIndex(), 0);
  EXPECT_EQ(Compile("(ts)")->FieldIndex(), 4);
  EXPECT_EQ(Compile("`my field`")->FieldIndex(), 5);
  EXPECT_EQ(Compile("id + 0")->FieldIndex(), -1);
  EXPECT_EQ(Compile("1")->FieldIndex(), -1);

  // A string field reference is a view into the record, not a copy.
  auto e = Compile("name");
  absl::string_view v = e->EvalString(record_);
  EXPECT_EQ(v.data(), record_.GetString(2).data());
}

TEST_F(ExprTest, StringResultsFollowTheRecord) {
  auto e = Compile("upper(concat(name, '-', id))");
  Record a = TestRecord();
  Record b = TestRecord();
  b.SetString(2, "x");
  b.SetInt(0, 7);
  EXPECT_EQ(e->EvalString(a), "  BOB  -42");
  EXPECT_EQ(e->EvalString(b), "X-7");
  EXPECT_EQ(e->EvalString(a), "  BOB  -42");
}

TEST_F(ExprTest, TypeErrorsNameTheColumn) {
  EXPECT_THAT(Error("name < 3"), StatusIs(absl::StatusCode::kInvalidArgument,
                                          "column 6: cannot compare string with int64"));
  EXPECT_THAT(Error("id == true"), StatusIs(absl::StatusCode::kInvalidArgument,
                                            "column 4: cannot compare int64 with bool"));
  EXPECT_THAT(Error("1 + 'a'"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("column 3: cannot apply '+' to int64 and string"),
                             HasSubstr("to_string"))));
  EXPECT_THAT(Error("name * 2"), StatusIs(absl::StatusCode::kInvalidArgument,
                                          "column 6: cannot apply '*' to string and int64"));
  EXPECT_THAT(Error("id and true"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 4: operator 'and' needs bool operands, got int64"));
  EXPECT_THAT(Error("not 1"), StatusIs(absl::StatusCode::kInvalidArgument,
                                       "column 1: operator 'not' needs bool operands, got int64"));
  EXPECT_THAT(Error("-name"), StatusIs(absl::StatusCode::kInvalidArgument,
                                       "column 1: unary '-' needs a number, got string"));
  EXPECT_THAT(Error("if(1, 2, 3)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 4: argument 1 of if() must be bool, got int64"));
  EXPECT_THAT(Error("substr(name, 'x')"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 14: argument 2 of substr() must be an integer, got string"));
  EXPECT_THAT(Error("upper(id)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 7: argument 1 of upper() must be string, got int64"));
  EXPECT_THAT(Error("if(active, 'a', 2)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 17: if() branches have different types: string and int64"));
  EXPECT_THAT(Error("max(1, 'a')"), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("column 8: max() arguments")));
  EXPECT_THAT(Error("to_timestamp('x')"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("column 14: ")));
}

TEST_F(ExprTest, ArgumentCounts) {
  EXPECT_THAT(Error("substr('a')"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 1: substr() takes 2 to 3 arguments, got 1"));
  EXPECT_THAT(Error("1 + lower()"), StatusIs(absl::StatusCode::kInvalidArgument,
                                             "column 5: lower() takes 1 argument, got 0"));
  EXPECT_THAT(Error("concat()"), StatusIs(absl::StatusCode::kInvalidArgument,
                                          "column 1: concat() takes at least 1 arguments, got 0"));
  EXPECT_THAT(Error("if(true, 1)"), StatusIs(absl::StatusCode::kInvalidArgument,
                                             "column 1: if() takes 3 arguments, got 2"));
}

TEST_F(ExprTest, UnknownNames) {
  EXPECT_THAT(Error("pirce + 1"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 1: unknown field 'pirce' (fields: id, price, name, active, ts, "
                       "my field)"));
  EXPECT_THAT(Error("id + `nope`"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("column 6: unknown field 'nope' (fields: id,")));
  EXPECT_THAT(Error("1 + foo(id)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("column 5: unknown function 'foo' (functions: "),
                             HasSubstr("lower"), HasSubstr("to_timestamp"))));
  EXPECT_THAT(CompileExpr("x", Schema()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 1: unknown field 'x' (schema has no fields)"));
}

TEST_F(ExprTest, SyntaxErrors) {
  using absl::StatusCode;
  EXPECT_THAT(Error(""), StatusIs(StatusCode::kInvalidArgument, "column 1: empty expression"));
  EXPECT_THAT(Error("   "), StatusIs(StatusCode::kInvalidArgument, "column 4: empty expression"));
  EXPECT_THAT(Error("1 +"), StatusIs(StatusCode::kInvalidArgument,
                                     "column 4: unexpected end of expression"));
  EXPECT_THAT(Error("'abc"),
              StatusIs(StatusCode::kInvalidArgument, "column 1: unterminated string"));
  EXPECT_THAT(Error("id + `abc"),
              StatusIs(StatusCode::kInvalidArgument, "column 6: unterminated field name"));
  EXPECT_THAT(Error("1 2"), StatusIs(StatusCode::kInvalidArgument,
                                     "column 3: unexpected '2' after expression"));
  EXPECT_THAT(Error("(1 + 2"), StatusIs(StatusCode::kInvalidArgument,
                                        "column 7: expected ')' but found end of expression"));
  EXPECT_THAT(Error("1 + 2)"), StatusIs(StatusCode::kInvalidArgument,
                                        "column 6: unexpected ')' after expression"));
  EXPECT_THAT(Error("lower(name name)"),
              StatusIs(StatusCode::kInvalidArgument,
                       "column 12: expected ',' or ')' but found 'name'"));
  EXPECT_THAT(Error("id = 1"), StatusIs(StatusCode::kInvalidArgument,
                                        StartsWith("column 4: unexpected '=' (use '=='")));
  EXPECT_THAT(Error("id # 1"), StatusIs(StatusCode::kInvalidArgument,
                                        "column 4: unexpected character '#'"));
  EXPECT_THAT(Error("1 + and"), StatusIs(StatusCode::kInvalidArgument,
                                         "column 5: unexpected 'and'"));
  EXPECT_THAT(Error("12abc"), StatusIs(StatusCode::kInvalidArgument,
                                       StartsWith("column 1: malformed number")));
  EXPECT_THAT(Error("1.2.3"), StatusIs(StatusCode::kInvalidArgument,
                                       StartsWith("column 1: malformed number")));
  EXPECT_THAT(Error("id\x01"), StatusIs(StatusCode::kInvalidArgument,
                                        "column 3: unexpected character byte '\\x01'"));
}

TEST_F(ExprTest, DeepNestingIsAnErrorNotACrash) {
  EXPECT_EQ(Int(std::string(256, '(') + "1" + std::string(256, ')')), 1);
  EXPECT_THAT(Error(std::string(257, '(') + "1" + std::string(257, ')')),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 257: expression nested deeper than 256 levels"));
  EXPECT_THAT(Error(std::string(100000, '(') + "1" + std::string(100000, ')')),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 257: expression nested deeper than 256 levels"));
  EXPECT_THAT(Error(std::string(100000, '-') + "1"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 257: expression nested deeper than 256 levels"));
  EXPECT_THAT(Error(std::string(100000, '!') + "true"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 257: expression nested deeper than 256 levels"));
  std::string nots;
  for (int i = 0; i < 100000; ++i) nots += "not ";
  EXPECT_THAT(Error(nots + "true"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 1025: expression nested deeper than 256 levels"));
  std::string sum = "1";
  for (int i = 0; i < 100000; ++i) sum += "+1";
  EXPECT_THAT(Error(sum), StatusIs(absl::StatusCode::kInvalidArgument,
                                   "column 1: expression has more than 1000 levels of operators "
                                   "(split it up)"));
  std::string calls;
  for (int i = 0; i < 100000; ++i) calls += "abs(";
  EXPECT_THAT(Error(calls),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "column 1025: expression nested deeper than 256 levels"));
}

TEST_F(ExprTest, ErrorsCarryTheirColumn) {
  auto bad = CompileExpr("id + pirce", schema_);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(ExprErrorColumn(bad.status()), 6);
  EXPECT_EQ(ExprErrorColumn(absl::InvalidArgumentError("no column")), 0);
}

TEST_F(ExprTest, DeepButLegalTreesEvaluate) {
  std::string sum = "1";
  for (int i = 0; i < 900; ++i) sum += "+1";
  EXPECT_EQ(Int(sum), 901);
}

TEST_F(ExprTest, WarmEvaluationDoesNotAllocate) {
  const int64_t at_start = g_allocations.load();
  auto s = Compile("concat(upper(trim(name)), '-', to_string(id * 1000000007), '-', "
                   "lower(substr(`my field`, 1)), to_string(price / 3))");
  auto b = Compile("contains(upper(name), 'BO') and hash(name) >= 0 and max(name, 'a') != ''");
  auto d = Compile("if(active, to_double(to_string(price)), 0.0) + abs(-price)");
  auto split = Compile("concat(split_index(name, 'o', 1), count_char(name, ' '), hour(ts))");
  ASSERT_GT(g_allocations.load(), at_start);  // The counter works: compiling allocates.
  Record out(1);
  EXPECT_EQ(split->EvalString(record_), "b  422");
  EvalInto(*split, record_, FieldType::kString, &out, 0);
  EXPECT_EQ(s->EvalString(record_), "BOB-42000000294-paced3.1666666666666665");
  EvalInto(*s, record_, FieldType::kString, &out, 0);  // Grows `out`'s buffer once.
  const int64_t before = g_allocations.load();
  for (int i = 0; i < 100; ++i) {
    (void)s->EvalString(record_);
    (void)b->EvalBool(record_);
    (void)d->EvalDouble(record_);
    EvalInto(*s, record_, FieldType::kString, &out, 0);
    EvalInto(*d, record_, FieldType::kInt64, &out, 0);
    EvalInto(*split, record_, FieldType::kString, &out, 0);
  }
  EXPECT_EQ(g_allocations.load() - before, 0);
}

// Evaluates `e` with the accessor matching its type, so that fuzzed expressions that compile
// also get run.
void EvalAny(const Expr& e, const Record& r) {
  switch (e.type()) {
    case FieldType::kDouble: (void)e.EvalDouble(r); break;
    case FieldType::kString: (void)e.EvalString(r); break;
    case FieldType::kBool: (void)e.EvalBool(r); break;
    default: (void)e.EvalInt(r); break;
  }
}

TEST_F(ExprTest, RandomBytesNeverCrash) {
  std::mt19937 rng(12345);
  const std::string alphabet = "0123456789.eE+-*/%()<>=!&|,'\"`\\ abcdinotr_\x01\xff\t";
  int compiled = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string text;
    const int len = static_cast<int>(rng() % 24);
    for (int j = 0; j < len; ++j) {
      text.push_back(rng() % 8 == 0 ? static_cast<char>(rng() % 256)
                                    : alphabet[rng() % alphabet.size()]);
    }
    auto e = CompileExpr(text, schema_);
    if (e.ok()) {
      ++compiled;
      EvalAny(**e, record_);
    } else {
      EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << text;
      EXPECT_THAT(std::string(e.status().message()), StartsWith("column ")) << text;
    }
  }
  EXPECT_GT(compiled, 0);
}

TEST_F(ExprTest, RandomTokenSequencesNeverCrash) {
  const std::vector<std::string> tokens = {
      "id",  "price", "name", "active", "ts",    "`my field`", "1",      "0",     "-1",
      "2.5", "'s'",   "true", "false",  "+",     "-",          "*",      "/",     "%",
      "==",  "!=",    "<",    ">=",     "and",   "or",         "not",    "(",     ")",
      ",",   "if(",   "min(", "max(",   "abs(", "hash(",      "substr(", "concat(",
      "to_string(", "to_int(", "to_double(", "length(", "upper(", "trim(", "contains("};
  std::mt19937 rng(54321);
  int compiled = 0;
  for (int i = 0; i < 50000; ++i) {
    std::string text;
    const int len = 1 + static_cast<int>(rng() % 10);
    for (int j = 0; j < len; ++j) {
      text += tokens[rng() % tokens.size()];
      text += ' ';
    }
    auto e = CompileExpr(text, schema_);
    if (e.ok()) {
      ++compiled;
      EvalAny(**e, record_);
      Record out(1);
      for (FieldType t : {FieldType::kInt64, FieldType::kDouble, FieldType::kString,
                          FieldType::kBool, FieldType::kTimestamp}) {
        EvalInto(**e, record_, t, &out, 0);
      }
    } else {
      EXPECT_THAT(std::string(e.status().message()), StartsWith("column ")) << text;
    }
  }
  EXPECT_GT(compiled, 100);
}

TEST_F(ExprTest, EvalIntoConverts) {
  Record out(5);
  EvalInto(*Compile("id + 1"), record_, FieldType::kDouble, &out, 0);
  EXPECT_DOUBLE_EQ(out.GetDouble(0), 43.0);
  EvalInto(*Compile("price * 3"), record_, FieldType::kInt64, &out, 1);
  EXPECT_EQ(out.GetInt(1), 28);  // 28.5 truncated.
  EvalInto(*Compile("id * 1000"), record_, FieldType::kTimestamp, &out, 1);
  EXPECT_EQ(out.GetInt(1), 42000);
  EvalInto(*Compile("1.5e3"), record_, FieldType::kTimestamp, &out, 1);
  EXPECT_EQ(out.GetInt(1), 1500);
  EvalInto(*Compile("ts"), record_, FieldType::kInt64, &out, 1);
  EXPECT_EQ(out.GetInt(1), 1700000000000);
  EvalInto(*Compile("ts"), record_, FieldType::kDouble, &out, 0);
  EXPECT_DOUBLE_EQ(out.GetDouble(0), 1.7e12);
  EvalInto(*Compile("price"), record_, FieldType::kDouble, &out, 0);
  EXPECT_DOUBLE_EQ(out.GetDouble(0), 9.5);
  EvalInto(*Compile("trim(name)"), record_, FieldType::kString, &out, 2);
  EXPECT_EQ(out.GetString(2), "Bob");
  EvalInto(*Compile("name"), record_, FieldType::kString, &out, 2);
  EXPECT_EQ(out.GetString(2), "  Bob  ");
  EvalInto(*Compile("id > 1"), record_, FieldType::kBool, &out, 3);
  EXPECT_TRUE(out.GetBool(3));
  EvalInto(*Compile("not active"), record_, FieldType::kBool, &out, 3);
  EXPECT_FALSE(out.GetBool(3));
  EvalInto(*Compile("id"), record_, FieldType::kString, &out, 4);
  EXPECT_EQ(out.GetString(4), "42");
}

// Nulls: a record with nullable fields `n` (int64), `s` (string), `b` (bool), `d` (double)
// and a NOT NULL `k`; `Tri` evaluates in three-valued terms: "null", "true", "false" / value.
class NullExprTest : public ::testing::Test {
 protected:
  NullExprTest()
      : schema_({{"k", FieldType::kInt64},
                 {"n", FieldType::kInt64, true},
                 {"s", FieldType::kString, true},
                 {"b", FieldType::kBool, true},
                 {"left.d", FieldType::kDouble, true}}),
        r_(5) {
    r_.SetInt(0, 7);
    r_.SetInt(1, 3);
    r_.SetString(2, "x");
    r_.SetBool(3, true);
    r_.SetDouble(4, 1.5);
  }
  std::string Eval(const std::string& text) {
    auto e = CompileExpr(text, schema_);
    EXPECT_OK(e.status());
    if (!e.ok()) return "<error>";
    const Expr& x = **e;
    if (x.nullable() && x.IsNull(r_)) return "null";
    switch (x.type()) {
      case FieldType::kBool: return x.EvalBool(r_) ? "true" : "false";
      case FieldType::kString: return std::string(x.EvalString(r_));
      case FieldType::kDouble: return absl::StrCat(x.EvalDouble(r_));
      default: return absl::StrCat(x.EvalInt(r_));
    }
  }
  bool Nullable(const std::string& text) { return (*CompileExpr(text, schema_))->nullable(); }

  Schema schema_;
  Record r_;
};

TEST_F(NullExprTest, NotNullValuesEvaluateAsBefore) {
  EXPECT_EQ(Eval("n + k"), "10");
  EXPECT_EQ(Eval("concat(s, 'y')"), "xy");
  EXPECT_EQ(Eval("left.d * 2"), "3");
  EXPECT_EQ(Eval("is_null(n)"), "false");
  EXPECT_EQ(Eval("coalesce(n, k)"), "3");
  EXPECT_FALSE(Nullable("k + 1"));
  EXPECT_TRUE(Nullable("n + 1"));
  EXPECT_FALSE(Nullable("is_null(n)"));
  EXPECT_FALSE(Nullable("coalesce(n, 0)"));
  EXPECT_TRUE(Nullable("coalesce(n, n)"));
  EXPECT_FALSE(Nullable("if(b, 1, 2)"));  // a null condition takes the else branch
}

TEST_F(NullExprTest, NullPropagatesThroughOperatorsAndFunctions) {
  r_.SetNull(1);
  r_.SetNull(2);
  r_.SetNull(4);
  EXPECT_EQ(Eval("n + 1"), "null");
  EXPECT_EQ(Eval("-n"), "null");
  EXPECT_EQ(Eval("n == n"), "null");
  EXPECT_EQ(Eval("n > 1"), "null");
  EXPECT_EQ(Eval("max(n, k)"), "null");
  EXPECT_EQ(Eval("to_string(n)"), "null");
  EXPECT_EQ(Eval("concat(s, 'y')"), "null");
  EXPECT_EQ(Eval("s + 'y'"), "null");
  EXPECT_EQ(Eval("substr('abc', n)"), "null");
  EXPECT_EQ(Eval("length(s)"), "null");
  EXPECT_EQ(Eval("left.d / 2"), "null");
  EXPECT_EQ(Eval("if(k > 1, n, 5)"), "null");
  EXPECT_EQ(Eval("if(n > 1, 4, 5)"), "5");
  EXPECT_EQ(Eval("is_null(n)"), "true");
  EXPECT_EQ(Eval("is_null(n + 1)"), "true");
  EXPECT_EQ(Eval("is_null(k)"), "false");
  EXPECT_EQ(Eval("coalesce(n, k)"), "7");
  EXPECT_EQ(Eval("coalesce(n, n + 1, 9)"), "9");
  EXPECT_EQ(Eval("coalesce(s, 'none')"), "none");
  EXPECT_EQ(Eval("coalesce(left.d, 0)"), "0");
  EXPECT_EQ(Eval("coalesce(n, n)"), "null");
}

TEST_F(NullExprTest, AndOrFollowThreeValuedLogic) {
  r_.SetNull(3);  // b is null
  EXPECT_EQ(Eval("b and false"), "false");
  EXPECT_EQ(Eval("false and b"), "false");
  EXPECT_EQ(Eval("b and true"), "null");
  EXPECT_EQ(Eval("b or true"), "true");
  EXPECT_EQ(Eval("true or b"), "true");
  EXPECT_EQ(Eval("b or false"), "null");
  EXPECT_EQ(Eval("not b"), "null");
  EXPECT_EQ(Eval("b and b"), "null");
  r_.ClearNull(3);
  r_.SetBool(3, false);
  EXPECT_EQ(Eval("b or false"), "false");
  EXPECT_EQ(Eval("b and true"), "false");
}

TEST_F(NullExprTest, EvalIntoSetsAndClearsTheNullBit) {
  auto e = CompileExpr("n * 2", schema_);
  ASSERT_OK(e.status());
  Record out(1);
  r_.SetNull(1);
  EvalInto(**e, r_, FieldType::kInt64, &out, 0);
  EXPECT_TRUE(out.IsNull(0));
  r_.ClearNull(1);
  EvalInto(**e, r_, FieldType::kDouble, &out, 0);
  EXPECT_FALSE(out.IsNull(0));
  EXPECT_EQ(out.GetDouble(0), 6.0);
}

TEST_F(NullExprTest, CoalesceNeedsOneTypeAndDottedNamesAreFields) {
  EXPECT_THAT(CompileExpr("coalesce(n, 'a')", schema_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("coalesce() arguments have different types: int64 and string")));
  EXPECT_THAT(CompileExpr("left.e", schema_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown field 'left.e'")));
  EXPECT_EQ(Eval("`left.d` + 1"), "2.5");
  EXPECT_EQ(Eval("1.5 + .5"), "2");
}

// Specialised nodes (an operand read in place, a literal divisor, folded constants) against
// the general ones on edge values: `a` and `b` are int64 fields, `x` a double, `t` a string;
// `a OP b` (two fields) goes through the general operator functors and `(a + 0) OP (b + 0)`
// through child nodes, while `a OP <literal>` takes the specialised node (`if(true, a, 0)` is
// a child node no specialisation sees through).
class SpecialisedExprTest : public ::testing::Test {
 protected:
  SpecialisedExprTest()
      : schema_({{"a", FieldType::kInt64},
                 {"b", FieldType::kInt64},
                 {"x", FieldType::kDouble},
                 {"t", FieldType::kString},
                 {"n", FieldType::kInt64, true}}),
        r_(5) {}
  std::unique_ptr<Expr> Compile(const std::string& text) {
    auto e = CompileExpr(text, schema_);
    EXPECT_OK(e.status()) << text;
    return e.ok() ? std::move(e).value() : nullptr;
  }

  static std::vector<int64_t> EdgeValues() {
    constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    std::vector<int64_t> v = {kMin,     kMin + 1, kMin + 122, -1000000007, -500, -246, -123, -122,
                              -7,       -2,       -1,         0,           1,    2,    7,    122,
                              123,      246,      500,        1000000007,  kMax - 1, kMax,
                              int64_t{1} << 62, -(int64_t{1} << 62), (int64_t{1} << 62) + 1};
    std::mt19937_64 rng(12);
    for (int i = 0; i < 200; ++i) {
      v.push_back(static_cast<int64_t>(rng()));
      v.push_back(static_cast<int64_t>(rng() >> (rng() % 63)));
      v.push_back(-static_cast<int64_t>(rng() >> (1 + rng() % 62)));
    }
    return v;
  }

  Schema schema_;
  Record r_;
};

TEST_F(SpecialisedExprTest, DivisionAndModuloByALiteralMatchTheGeneralOperators) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const std::vector<int64_t> divisors = {0,    1,    -1,         2,     -2,   3,    7,    123,
                                         -123, 500,  1000,       10000, 1024, -1024, 1000000007,
                                         int64_t{1} << 62, -(int64_t{1} << 62), kMax, kMax - 1,
                                         kMin, kMin + 1, 3037000499, -3037000499};
  const std::vector<int64_t> dividends = EdgeValues();
  for (int64_t c : divisors) {
    const std::string lit = c == kMin ? "-9223372036854775808" : absl::StrCat(c);
    for (const char* op : {"%", "/"}) {
      auto fast = Compile(absl::StrCat("a ", op, " ", lit));
      auto fast_node = Compile(absl::StrCat("(a + 0) ", op, " ", lit));
      auto general = Compile(absl::StrCat("a ", op, " b"));
      auto nodes = Compile(absl::StrCat("(a + 0) ", op, " (b + 0)"));
      ASSERT_TRUE(fast && fast_node && general && nodes);
      r_.SetInt(1, c);
      for (int64_t a : dividends) {
        r_.SetInt(0, a);
        const int64_t want = general->EvalInt(r_);
        ASSERT_EQ(fast->EvalInt(r_), want) << a << " " << op << " " << c;
        ASSERT_EQ(fast_node->EvalInt(r_), want) << a << " " << op << " " << c;
        ASSERT_EQ(nodes->EvalInt(r_), want) << a << " " << op << " " << c;
      }
    }
  }
  // The rules themselves, on the specialised path.
  r_.SetInt(0, -7);
  EXPECT_EQ(Compile("a % 2")->EvalInt(r_), -1);
  EXPECT_EQ(Compile("a / 2")->EvalInt(r_), -3);
  EXPECT_EQ(Compile("a % -2")->EvalInt(r_), -1);
  EXPECT_EQ(Compile("a / -2")->EvalInt(r_), 3);
  r_.SetInt(0, kMin);
  EXPECT_EQ(Compile("a / -1")->EvalInt(r_), kMin);
  EXPECT_EQ(Compile("a % -1")->EvalInt(r_), 0);
  EXPECT_EQ(Compile("a / 0")->EvalInt(r_), 0);
  EXPECT_EQ(Compile("a / 1")->EvalInt(r_), kMin);
  EXPECT_EQ(Compile("a / -9223372036854775808")->EvalInt(r_), 1);
  EXPECT_EQ(Compile("a % 4")->EvalInt(r_), 0);
  EXPECT_EQ(Compile("a / 2")->EvalInt(r_), kMin / 2);
}

TEST_F(SpecialisedExprTest, FieldAndLiteralOperandsMatchChildNodes) {
  const std::vector<int64_t> values = EdgeValues();
  const std::vector<std::string> int_exprs = {"a + 5", "5 - a", "a * -3", "a - b", "a * b"};
  const std::vector<std::string> bool_exprs = {"a == 123", "123 < a", "a >= b", "a != -1",
                                               "a % 123 == 0", "t == 'abc'", "'abc' < t",
                                               "t >= t", "x > 0.5", "a * 0.908 > x"};
  auto slow = [](const std::string& text) {
    // The same expression with every field and literal behind a child node.
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
      const char c = text[i];
      if ((c == 'a' || c == 'b' || c == 'x') && (i + 1 == text.size() || text[i + 1] == ' ')) {
        out += c == 'x' ? "(x + 0.0)" : absl::StrCat("(", std::string(1, c), " + 0)");
      } else if (c == 't' && (i + 1 == text.size() || text[i + 1] == ' ')) {
        out += "concat(t)";
      } else {
        out += c;
      }
    }
    return out;
  };
  std::vector<std::pair<std::unique_ptr<Expr>, std::unique_ptr<Expr>>> ints, bools;
  for (const std::string& t : int_exprs) ints.emplace_back(Compile(t), Compile(slow(t)));
  for (const std::string& t : bool_exprs) bools.emplace_back(Compile(t), Compile(slow(t)));
  const std::vector<std::string> strings = {"", "abc", "abd", "ab"};
  for (size_t i = 0; i < values.size(); ++i) {
    r_.SetInt(0, values[i]);
    r_.SetInt(1, values[(i * 7 + 3) % values.size()]);
    r_.SetDouble(2, static_cast<double>(values[(i * 5 + 1) % values.size()]) / 3);
    r_.SetString(3, strings[i % strings.size()]);
    for (size_t k = 0; k < ints.size(); ++k) {
      ASSERT_EQ(ints[k].first->EvalInt(r_), ints[k].second->EvalInt(r_)) << int_exprs[k];
    }
    for (size_t k = 0; k < bools.size(); ++k) {
      ASSERT_EQ(bools[k].first->EvalBool(r_), bools[k].second->EvalBool(r_)) << bool_exprs[k];
    }
  }
}

TEST_F(SpecialisedExprTest, NullOperandsStayNull) {
  r_.SetInt(0, 5);
  r_.SetNull(4);
  for (const char* text : {"n % 123", "n / 2", "n + 1", "n == 0", "n * 0.5", "1 - n"}) {
    auto e = Compile(text);
    ASSERT_NE(e, nullptr);
    EXPECT_TRUE(e->nullable()) << text;
    EXPECT_TRUE(e->IsNull(r_)) << text;
    Record out(1);
    EvalInto(*e, r_, e->type(), &out, 0);
    EXPECT_TRUE(out.IsNull(0)) << text;
  }
  r_.ClearNull(4);
  r_.SetInt(4, -246);
  auto e = Compile("n % 123 == 0");
  EXPECT_FALSE(e->IsNull(r_));
  EXPECT_TRUE(e->EvalBool(r_));
}

TEST_F(SpecialisedExprTest, ConstantsAreFoldedWithTheRuntimeRules) {
  auto int_of = [&](const std::string& text) {
    auto e = Compile(text);
    return e == nullptr ? -999 : e->EvalInt(r_);
  };
  EXPECT_EQ(int_of("-9223372036854775808 / -1"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(int_of("9223372036854775807 + 1"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(int_of("7 % 0 + 7 / 0"), 0);
  EXPECT_EQ(int_of("-7 % 2"), -1);
  EXPECT_EQ(int_of("a + 2 * 60"), 120);
  EXPECT_EQ(int_of("length(lower('AbC') + 'd')"), 4);
  EXPECT_EQ(Compile("1.0 / 0")->EvalDouble(r_), std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(Compile("0.0 / 0")->EvalDouble(r_)));
  EXPECT_EQ(Compile("to_string(0.1 + 0.2)")->EvalString(r_), "0.30000000000000004");
  EXPECT_EQ(Compile("to_timestamp(1000) + 1")->type(), FieldType::kTimestamp);
  EXPECT_TRUE(Compile("is_null(split_index('a', '/', 5))")->EvalBool(r_));
  // A folded constant is not a literal where a literal is required: checked at run time, as
  // before folding.
  auto piece = Compile("split_index(t, '' + '', 0)");
  ASSERT_NE(piece, nullptr);
  EXPECT_TRUE(piece->IsNull(r_));
  EXPECT_FALSE(CompileExpr("count_char(t, 'a' + '')", schema_).ok());
}

TEST_F(SpecialisedExprTest, BareFieldsCopyIntoTheOutput) {
  r_.SetInt(0, -3);
  r_.SetDouble(2, 2.5);
  r_.SetString(3, "text");
  r_.SetNull(4);
  Record out(5);
  out.SetInt(4, 99);
  EvalInto(*Compile("a"), r_, FieldType::kTimestamp, &out, 0);
  EvalInto(*Compile("a"), r_, FieldType::kDouble, &out, 1);  // converted, not copied
  EvalInto(*Compile("x"), r_, FieldType::kDouble, &out, 2);
  EvalInto(*Compile("t"), r_, FieldType::kString, &out, 3);
  EvalInto(*Compile("n"), r_, FieldType::kInt64, &out, 4);
  EXPECT_EQ(out.GetInt(0), -3);
  EXPECT_EQ(out.GetDouble(1), -3.0);
  EXPECT_EQ(out.GetDouble(2), 2.5);
  EXPECT_EQ(out.GetString(3), "text");
  EXPECT_TRUE(out.IsNull(4));
  r_.ClearNull(4);
  r_.SetInt(4, 8);
  EvalInto(*Compile("n"), r_, FieldType::kInt64, &out, 4);
  EXPECT_FALSE(out.IsNull(4));
  EXPECT_EQ(out.GetInt(4), 8);
}

TEST_F(SpecialisedExprTest, StringValueAndNullTogetherMatchIsNullThenEvalString) {
  const std::vector<std::string> exprs = {
      "split_index(t, '/', 1)",
      "split_index(split_index(t, '&id=', 1), '&', 0)",
      "if(a == 0, '0', if(a == 1, 'one', split_index(split_index(t, '&id=', 1), '&', 0)))",
      "split_index(t, t, a)",
      "split_index(t, '/', n)",
      "coalesce(split_index(t, '/', 2), 'none')",
      "t"};
  const std::vector<std::string> texts = {"", "a/b", "x&id=7&y", "x&id=", "&id=&id=", "/", "a/b/c"};
  for (const std::string& text : exprs) {
    auto e = Compile(text);
    ASSERT_NE(e, nullptr);
    for (size_t i = 0; i < texts.size() * 4; ++i) {
      r_.SetString(3, texts[i % texts.size()]);
      r_.SetInt(0, static_cast<int64_t>(i % 4) - 1);
      r_.SetInt(4, static_cast<int64_t>(i % 3) - 1);
      r_.SetNullTo(4, i % 5 == 0);
      const bool null = e->nullable() && e->IsNull(r_);
      const std::string value = null ? "" : std::string(e->EvalString(r_));
      absl::string_view got;
      ASSERT_EQ(e->EvalStringOrNull(r_, &got), !null) << text << " on " << texts[i % texts.size()];
      if (!null) {
        ASSERT_EQ(got, value) << text;
      }
      Record out(1);
      EvalInto(*e, r_, FieldType::kString, &out, 0);
      ASSERT_EQ(out.IsNull(0), null) << text;
      if (!null) {
        ASSERT_EQ(out.GetString(0), value) << text;
      }
    }
  }
  r_.SetString(3, "x&id=7&y");
  r_.SetInt(0, 5);
  absl::string_view got;
  ASSERT_TRUE(Compile(exprs[2])->EvalStringOrNull(r_, &got));
  EXPECT_EQ(got, "7");
}

// `x % c == k` and `!=` as one node (a divisibility test for k == 0), in either order, against
// C++'s % on edge values.
TEST_F(SpecialisedExprTest, ModuloComparedWithALiteralMatchesTheRemainder) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const std::vector<int64_t> divisors = {2,    -2,  3,    7,     123,   -123, 1024, -1024,
                                         6,    96,  -246, 1000,  -1000, 1000000007,
                                         int64_t{1} << 62, kMax, kMin + 1, 3037000499,
                                         (int64_t{1} << 62) - 2,
                                         // Bounds of 1-3 and rotations by 61-63: an even part
                                         // of 2^61..2^63 with an odd part of 1 or 3.
                                         kMin, -(int64_t{1} << 62), 3 * (int64_t{1} << 61),
                                         -3 * (int64_t{1} << 61)};
  for (int64_t c : divisors) {
    // Edge values, and multiples of c (the largest too) and their neighbours.
    std::vector<int64_t> values = EdgeValues();
    for (int64_t m : {int64_t{-50}, int64_t{-3}, int64_t{-1}, int64_t{1}, int64_t{2}, int64_t{50},
                      kMax / c, kMin / c, kMax / c - 1}) {
      const __int128 v = static_cast<__int128>(c) * m;
      if (v > kMax || v < kMin) continue;
      for (int d : {-1, 0, 1}) {
        if (v + d <= kMax && v + d >= kMin) values.push_back(static_cast<int64_t>(v + d));
      }
    }
    for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{5}, c == kMin ? c + 1 : c - 1}) {
      const std::string lc = absl::StrCat(c);
      const std::string lk = absl::StrCat(k);
      auto eq = Compile(absl::StrCat("a % ", lc, " == ", lk));
      auto eq_reversed = Compile(absl::StrCat(lk, " == a % ", lc));
      auto ne = Compile(absl::StrCat("a % ", lc, " != ", lk));
      auto eq_node = Compile(absl::StrCat("if(true, a, 0) % ", lc, " == ", lk));
      auto ne_null = Compile(absl::StrCat("n % ", lc, " != ", lk));
      ASSERT_TRUE(eq && eq_reversed && ne && eq_node && ne_null);
      for (int64_t a : values) {
        r_.SetInt(0, a);
        r_.SetInt(4, a);
        r_.ClearNull(4);
        const bool want = a % c == k;
        ASSERT_EQ(eq->EvalBool(r_), want) << a << " % " << c << " == " << k;
        ASSERT_EQ(eq_reversed->EvalBool(r_), want) << a << " % " << c << " == " << k;
        ASSERT_EQ(ne->EvalBool(r_), !want) << a << " % " << c << " != " << k;
        ASSERT_EQ(eq_node->EvalBool(r_), want) << a << " % " << c << " == " << k;
        bool got = want;
        ASSERT_TRUE(ne_null->EvalBoolOrNull(r_, &got));
        ASSERT_EQ(got, !want);
        r_.SetNull(4);
        ASSERT_FALSE(ne_null->EvalBoolOrNull(r_, &got));
        ASSERT_TRUE(ne_null->IsNull(r_));
      }
      // The same over batches (EvalBoolBatch), n null for every third record.
      std::vector<Record> records;
      for (size_t i = 0; i < values.size(); ++i) {
        Record r(5);
        r.SetInt(0, values[i]);
        r.SetInt(4, values[i]);
        if (i % 3 == 0) r.SetNull(4);
        records.push_back(std::move(r));
      }
      uint8_t keep[Expr::kEvalBatch];
      for (size_t start = 0; start < records.size(); start += Expr::kEvalBatch) {
        const size_t n = std::min(Expr::kEvalBatch, records.size() - start);
        for (const auto& [e, negated, null_drops] :
             {std::make_tuple(eq.get(), false, false), std::make_tuple(ne.get(), true, false),
              std::make_tuple(eq_node.get(), false, false),
              std::make_tuple(ne_null.get(), true, true)}) {
          e->EvalBoolBatch(records.data() + start, n, keep);
          for (size_t j = 0; j < n; ++j) {
            const int64_t a = values[start + j];
            const bool want = (a % c == k) != negated && !(null_drops && (start + j) % 3 == 0);
            ASSERT_EQ(keep[j], want ? 1 : 0)
                << a << " % " << c << " vs " << k << " negated " << negated;
          }
        }
      }
    }
  }
}

// `(x * m) % c` and `(x * m) / c` (either factor order) as one node: the same values as the
// wrapped product divided in C++, with a null field, compared with a literal, and inside a
// larger expression (datagen's `seq / 100 - (seq * 7919) % 500`).
TEST_F(SpecialisedExprTest, ScaledDivisionAndModuloMatchTheProductDivided) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const std::vector<int64_t> factors = {7919, -3, 0, 1, -1, 2, kMax, kMin + 1, int64_t{1} << 40};
  const std::vector<int64_t> divisors = {2, -2, 3, 7, 500, 10000, 1024, -1024, 1000000007, kMax, kMin + 1};
  const std::vector<int64_t> values = EdgeValues();
  auto product = [](int64_t a, int64_t m) {
    return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(m));
  };
  for (int64_t m : factors) {
    for (int64_t c : divisors) {
      const std::string lm = absl::StrCat("(", m, ")");
      const std::string lc = absl::StrCat("(", c, ")");
      auto mod = Compile(absl::StrCat("(a * ", lm, ") % ", lc));
      auto div = Compile(absl::StrCat("(", lm, " * a) / ", lc));
      auto mod_null = Compile(absl::StrCat("(n * ", lm, ") % ", lc));
      auto eq = Compile(absl::StrCat("(a * ", lm, ") % ", lc, " == 1"));
      auto divides = Compile(absl::StrCat("(a * ", lm, ") % ", lc, " != 0"));
      auto nested = Compile(absl::StrCat("a / 100 - (a * ", lm, ") % ", lc));
      ASSERT_TRUE(mod && div && mod_null && eq && divides && nested);
      for (int64_t a : values) {
        r_.SetInt(0, a);
        r_.SetInt(4, a);
        r_.ClearNull(4);
        const int64_t p = product(a, m);
        const int64_t want_mod = p % c;
        const int64_t want_div = p / c;
        SCOPED_TRACE(absl::StrCat("a=", a, " m=", m, " c=", c));
        ASSERT_EQ(mod->EvalInt(r_), want_mod);
        ASSERT_EQ(div->EvalInt(r_), want_div);
        int64_t got = 0;
        ASSERT_TRUE(mod_null->EvalIntOrNull(r_, &got));
        ASSERT_EQ(got, want_mod);
        ASSERT_FALSE(mod_null->IsNull(r_));
        ASSERT_EQ(eq->EvalBool(r_), want_mod == 1);
        ASSERT_EQ(divides->EvalBool(r_), want_mod != 0);
        ASSERT_EQ(nested->EvalInt(r_), static_cast<int64_t>(static_cast<uint64_t>(a / 100) -
                                                            static_cast<uint64_t>(want_mod)));
        r_.SetNull(4);
        ASSERT_FALSE(mod_null->EvalIntOrNull(r_, &got));
        ASSERT_TRUE(mod_null->IsNull(r_));
      }
    }
  }
}

// EvalIntBatch() gives what EvalInt() gives record by record: the nodes with a loop of their
// own (fields, literals, arithmetic with every operand kind, division and modulo by literals,
// the scaled form, datagen's key and event time) and nodes on the default path (if(), abs(),
// a cast from a string), over edge values in batches of 1, 7 and kEvalBatch.
TEST_F(SpecialisedExprTest, IntegerBatchesMatchRecordByRecordEvaluation) {
  const std::vector<std::string> texts = {
      "a", "42", "a + b", "a - 3", "5 - b", "a * b", "a / b", "a % b", "a / 7", "a % -500",
      "(a + b) % 1024", "(a * 7919) % 10000", "(7919 * a) / 100", "a / 100 - (a * 7919) % 500",
      "(a - b) * (b + 1) - a / 3", "if(a > b, a, b) % 10", "abs(a) + 1", "to_int(t) + a",
      "coalesce(n, 0) + a"};
  const std::vector<int64_t> values = EdgeValues();
  std::vector<Record> records;
  for (size_t i = 0; i < values.size(); ++i) {
    Record r(5);
    r.SetInt(0, values[i]);
    r.SetInt(1, values[(i * 7 + 3) % values.size()] % 1000);
    r.SetString(3, absl::StrCat(static_cast<int64_t>(i) - 100));
    if (i % 3 == 0) {
      r.SetNull(4);
    } else {
      r.SetInt(4, values[i] / 2);
    }
    records.push_back(std::move(r));
  }
  for (const std::string& text : texts) {
    SCOPED_TRACE(text);
    auto e = Compile(text);
    ASSERT_TRUE(e);
    ASSERT_FALSE(e->nullable());
    ASSERT_EQ(e->type(), FieldType::kInt64);
    for (size_t width : {size_t{1}, size_t{7}, Expr::kEvalBatch}) {
      std::vector<int64_t> out(width);
      for (size_t start = 0; start < records.size(); start += width) {
        const size_t n = std::min(width, records.size() - start);
        e->EvalIntBatch(records.data() + start, n, out.data());
        for (size_t j = 0; j < n; ++j) {
          ASSERT_EQ(out[j], e->EvalInt(records[start + j])) << "record " << start + j << " width " << width;
        }
      }
    }
  }
}

// EvalBoolBatch() gives 1 where EvalBool() (EvalBoolOrNull() for a nullable condition) gives
// true and 0 where it gives false or null, record by record: integer comparisons with every
// operand kind (fields, literals, arithmetic nodes), NOT NULL and nullable; `x % c == k` and
// `!=` over a field, a nullable field, a product and a sum, by a power of two or not, k zero or
// not; comparisons of doubles and strings; and nodes on the default path (and, or, not,
// is_null()), over edge values in batches of 1, 7 and kEvalBatch.
TEST_F(SpecialisedExprTest, BoolBatchesMatchRecordByRecordEvaluation) {
  const std::vector<std::string> texts = {
      "a < b", "a <= 7", "7 > a", "a == b", "a != 0", "a >= b", "a + b < 100", "a * 3 > b - 1",
      "a - b == 0", "n < a", "n == 3", "5 <= n", "n + a > 0", "to_timestamp(a) < to_timestamp(b)",
      "a % 123 == 0", "a % 123 != 0", "a % 7 == 3", "a % 7 != -3", "a % 8 == 0", "a % -16 != 0",
      "n % 3 == 0", "n % 3 != 1", "(a * 7919) % 100 == 0", "(a + b) % 10 == 0",
      "(a + b) % 10 != 4", "x < 1.5", "x == x", "t == '5'", "t < '3'", "a > 0 and n < 5",
      "a > 0 or n < 5", "not (a < b)", "is_null(n)", "a % 2 == 0 and b % 3 == 0"};
  const std::vector<int64_t> values = EdgeValues();
  std::vector<Record> records;
  for (size_t i = 0; i < values.size(); ++i) {
    Record r(5);
    r.SetInt(0, values[i]);
    r.SetInt(1, i % 5 == 0 ? values[i] : values[(i * 7 + 3) % values.size()] % 1000);
    r.SetDouble(2, i % 11 == 0 ? std::nan("") : static_cast<double>(values[i] % 5));
    r.SetString(3, absl::StrCat(static_cast<int64_t>(i % 13) - 3));
    if (i % 3 == 0) {
      r.SetNull(4);
    } else {
      r.SetInt(4, i % 4 == 0 ? 3 : values[i] / 2);
    }
    records.push_back(std::move(r));
  }
  for (const std::string& text : texts) {
    SCOPED_TRACE(text);
    auto e = Compile(text);
    ASSERT_TRUE(e);
    ASSERT_EQ(e->type(), FieldType::kBool);
    size_t kept = 0;
    for (size_t width : {size_t{1}, size_t{7}, Expr::kEvalBatch}) {
      std::vector<uint8_t> keep(width, 7);
      for (size_t start = 0; start < records.size(); start += width) {
        const size_t n = std::min(width, records.size() - start);
        e->EvalBoolBatch(records.data() + start, n, keep.data());
        for (size_t j = 0; j < n; ++j) {
          const Record& r = records[start + j];
          bool v = false;
          const bool want = e->nullable() ? e->EvalBoolOrNull(r, &v) && v : e->EvalBool(r);
          ASSERT_EQ(keep[j], want ? 1 : 0) << "record " << start + j << " width " << width;
          if (width == 1) kept += want ? 1 : 0;
        }
      }
    }
    // Every condition keeps some records and drops others here.
    EXPECT_GT(kept, 0u);
    EXPECT_LT(kept, records.size());
  }
}

// `lower(s) == 'lit'` and `!=` as one node (no lowered copy), in either order, against the
// comparison of lower()'s result made through an opaque node (`if(true, lower(t), '')`).
TEST_F(SpecialisedExprTest, LowerComparedWithALiteralMatchesTheLoweredCopy) {
  const std::vector<std::string> texts = {"", "apple", "Apple", "APPLE", "apples", "appl",
                                          "aPpLe", "ApPlE!", "baidu", "Baidu", "\xc3\x84pple",
                                          std::string("app\0e", 5), "google"};
  const std::vector<std::string> literals = {"apple", "Apple", "", "baidu", "apple!"};
  for (const std::string& lit : literals) {
    for (const char* op : {"==", "!="}) {
      auto fast = Compile(absl::StrCat("lower(t) ", op, " '", lit, "'"));
      auto reversed = Compile(absl::StrCat("'", lit, "' ", op, " lower(t)"));
      auto general = Compile(absl::StrCat("if(true, lower(t), '') ", op, " '", lit, "'"));
      ASSERT_TRUE(fast && reversed && general);
      for (const std::string& text : texts) {
        r_.SetString(3, text);
        const bool want = (absl::AsciiStrToLower(text) == lit) == (std::string(op) == "==");
        ASSERT_EQ(general->EvalBool(r_), want) << text << " " << op << " " << lit;
        ASSERT_EQ(fast->EvalBool(r_), want) << text << " " << op << " " << lit;
        ASSERT_EQ(reversed->EvalBool(r_), want) << text << " " << op << " " << lit;
        bool got = !want;
        ASSERT_TRUE(fast->EvalBoolOrNull(r_, &got));
        ASSERT_EQ(got, want);
      }
    }
  }
}

// EvalIntOrNull / EvalDoubleOrNull / EvalBoolOrNull (one evaluation) against IsNull() then
// Eval*() (the defaults), and EvalInto with them, for every combination of nulls.
TEST_F(NullExprTest, ValueAndNullTogetherMatchIsNullThenEval) {
  const std::vector<std::string> exprs = {
      "n + 1", "n * k - 3", "n % 7", "n % 7 == 0", "k % 7 != n", "left.d * 2", "left.d + n",
      "n * 0.5", "n == 0", "not b", "b and n > 1", "b or n > 1", "not (b and n > k)",
      "if(b, n, k)", "if(n > 3, left.d, 1.5)", "coalesce(n, k)", "coalesce(n, n + 1)",
      "coalesce(b, n > 0)", "is_null(n) or n > 0", "n > k and b or left.d < 0", "n", "b",
      "left.d", "k", "k + 1 > 2", "lower(s) == 'x'", "'x' != lower(s)"};
  for (const std::string& text : exprs) {
    auto compiled = CompileExpr(text, schema_);
    ASSERT_OK(compiled.status()) << text;
    const Expr& e = **compiled;
    for (int mask = 0; mask < 16; ++mask) {
      for (int64_t v : {int64_t{-7}, int64_t{0}, int64_t{7}, int64_t{14}}) {
        r_.ClearNulls();
        r_.SetInt(0, v / 7 + 2);
        r_.SetInt(1, v);
        r_.SetString(2, v > 0 ? "X" : "y");
        r_.SetBool(3, v > 0);
        r_.SetDouble(4, static_cast<double>(v) / 2);
        r_.SetNullTo(1, (mask & 1) != 0);
        r_.SetNullTo(2, (mask & 2) != 0);
        r_.SetNullTo(3, (mask & 4) != 0);
        r_.SetNullTo(4, (mask & 8) != 0);
        const bool null = e.nullable() && e.IsNull(r_);
        const std::string where = absl::StrCat(text, " mask=", mask, " v=", v);
        Record out(1);
        out.SetInt(0, 12345);
        EvalInto(e, r_, e.type(), &out, 0);
        ASSERT_EQ(out.IsNull(0), null) << where;
        switch (e.type()) {
          case FieldType::kBool: {
            bool got = false;
            ASSERT_EQ(e.EvalBoolOrNull(r_, &got), !null) << where;
            if (!null) {
              ASSERT_EQ(got, e.EvalBool(r_)) << where;
              ASSERT_EQ(out.GetBool(0), got) << where;
            }
            break;
          }
          case FieldType::kDouble: {
            double got = 0;
            ASSERT_EQ(e.EvalDoubleOrNull(r_, &got), !null) << where;
            if (!null) {
              ASSERT_EQ(got, e.EvalDouble(r_)) << where;
              ASSERT_EQ(out.GetDouble(0), got) << where;
            }
            break;
          }
          default: {
            int64_t got = 0;
            ASSERT_EQ(e.EvalIntOrNull(r_, &got), !null) << where;
            if (!null) {
              ASSERT_EQ(got, e.EvalInt(r_)) << where;
              ASSERT_EQ(out.GetInt(0), got) << where;
            }
            break;
          }
        }
      }
    }
  }
  // Three-valued results, spelled out.
  auto Compile = [&](const std::string& text) { return std::move(CompileExpr(text, schema_)).value(); };
  r_.ClearNulls();
  r_.SetNull(3);  // b null
  r_.SetInt(1, 5);
  bool got = true;
  EXPECT_FALSE(Compile("b and n > 1")->EvalBoolOrNull(r_, &got));  // null and true
  ASSERT_TRUE(Compile("b and n > 9")->EvalBoolOrNull(r_, &got));  // null and false
  EXPECT_FALSE(got);
  ASSERT_TRUE(Compile("b or n > 1")->EvalBoolOrNull(r_, &got));  // null or true
  EXPECT_TRUE(got);
  EXPECT_FALSE(Compile("b or n > 9")->EvalBoolOrNull(r_, &got));  // null or false
}

}  // namespace
}  // namespace sluice::plan
