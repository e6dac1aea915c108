// Cost of the record codec (common/record_codec.h) per record, encode and decode, against a
// hand-written baseline in the same run: the varint of a byte at a time (a branch per byte,
// as the codec wrote and read records before its word-at-a-time varints) over the same
// records and buffers. Buffers of 4096 records, as the data plane's 32 KiB buffers hold.
//
//   build/bin/codec_benchmark
//
// Records: "window" (window_benchmark's and exchange_benchmark's key and event time: 2-3
// byte varints of mixed lengths), "bid3" (three integers as Nexmark's bids carry them: two
// ids and a millisecond timestamp of 6 bytes), "bid" (q0's bid: four integers and three
// strings; the generic path with a switch per field), "join" (join_benchmark's id, key and event
// time, 3-4, 2-3 and 3 bytes).
//
// DecodeRow: each record decoded alone from a view of exactly its bytes, as a join decodes the
// rows it keeps (JoinOperatorBase::DecodeOne): every varint within its buffer's last 10 bytes.
// The baseline reads them a byte at a time, as the codec did there before session 27.
//
// DecodeIntRows: NextIntRows(), the buffer's records as rows of int64s instead of Records.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "benchmark/benchmark.h"
#include "common/record.h"
#include "common/record_codec.h"

namespace sluice {
namespace {

constexpr size_t kRecords = 4096;

enum class Workload { kWindow, kBid3, kBid, kJoin };

Schema SchemaOf(Workload w) {
  switch (w) {
    case Workload::kWindow: return Schema({{"key", FieldType::kInt64}, {"ts", FieldType::kTimestamp}});
    case Workload::kBid3:
      return Schema({{"auction", FieldType::kInt64},
                     {"bidder", FieldType::kInt64},
                     {"date_time", FieldType::kTimestamp}});
    case Workload::kBid:
      return Schema({{"auction", FieldType::kInt64},
                     {"bidder", FieldType::kInt64},
                     {"price", FieldType::kInt64},
                     {"channel", FieldType::kString},
                     {"url", FieldType::kString},
                     {"date_time", FieldType::kTimestamp},
                     {"extra", FieldType::kString}});
    case Workload::kJoin:
      return Schema({{"id", FieldType::kInt64}, {"key", FieldType::kInt64}, {"ts", FieldType::kTimestamp}});
  }
  return Schema();
}

std::vector<Record> RecordsOf(Workload w) {
  const Schema schema = SchemaOf(w);
  std::vector<Record> records(kRecords, Record(schema.size()));
  for (size_t k = 0; k < kRecords; ++k) {
    const int64_t seq = 4'000'000 + static_cast<int64_t>(k);
    Record& r = records[k];
    switch (w) {
      case Workload::kWindow:
        r.SetInt(0, (seq * 7919) % 10000);
        r.SetInt(1, seq / 100 - (seq * 7919) % 500);
        break;
      case Workload::kBid3:
        r.SetInt(0, 1000 + (seq * 7919) % 5000);
        r.SetInt(1, 1000 + (seq * 104729) % 20000);
        r.SetInt(2, 1'700'000'000'000 + seq * 10);
        break;
      case Workload::kBid:
        r.SetInt(0, 1000 + (seq * 7919) % 5000);
        r.SetInt(1, 1000 + (seq * 104729) % 20000);
        r.SetInt(2, (seq * 31) % 100'000'000);
        r.SetString(3, absl::StrCat("channel-", seq % 10'000));
        r.SetString(4, absl::StrCat("https://www.nexmark.com/", seq % 997, "/item.htm?query=1"));
        r.SetInt(5, 1'700'000'000'000 + seq * 10);
        r.SetString(6, "");
        break;
      case Workload::kJoin:
        r.SetInt(0, seq / 2);
        r.SetInt(1, (seq / 2 * 7919) % 10000);
        r.SetInt(2, seq / 200 - (seq / 2 * 7919) % 500);
        break;
    }
  }
  return records;
}

// The hand-written baseline: a varint a byte at a time.
inline char* BytewiseVarint(uint64_t v, char* p) {
  while (v >= 0x80) {
    *p++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

// Encodes `r` (NOT NULL fields only) as the codec does, a byte at a time.
char* BytewiseEncode(const Schema& schema, const Record& r, char* p) {
  for (size_t i = 0; i < schema.size(); ++i) {
    switch (schema.field(i).type) {
      case FieldType::kString:
        p = BytewiseVarint(r[i].s.size(), p);
        std::memcpy(p, r[i].s.data(), r[i].s.size());
        p += r[i].s.size();
        break;
      default: p = BytewiseVarint(ZigZag(r[i].i), p); break;
    }
  }
  return p;
}

// Decodes the first `size` bytes of `padded` (records of `n` NOT NULL integers) a byte at a
// time, with the bounds check hoisted per record as the codec did: 10 bytes a field must be
// readable (the padding after `size`). False on corrupt input.
bool BytewiseDecodeIntegral(size_t n, const std::string& padded, size_t size, Record* out,
                            size_t* count) {
  const char* p = padded.data();
  const char* const end = p + size;
  const char* const readable = p + padded.size();
  size_t k = 0;
  for (; p < end; ++k) {
    if (readable - p < static_cast<ptrdiff_t>(10 * n)) return false;
    for (size_t i = 0; i < n; ++i) {
      uint64_t byte = static_cast<unsigned char>(*p++);
      uint64_t result = byte & 0x7f;
      for (int shift = 7; byte >= 0x80; shift += 7) {
        if (shift > 63) return false;
        byte = static_cast<unsigned char>(*p++);
        result |= (byte & 0x7f) << shift;
      }
      out[k][i].i = UnZigZag(result);
    }
  }
  *count = k;
  return true;
}

std::string EncodedBuffer(const Schema& schema, const std::vector<Record>& records) {
  std::string buf;
  for (const Record& r : records) EncodeRecord(schema, r, &buf);
  return buf;
}

template <bool kCodec>
void Encode(benchmark::State& state, Workload w) {
  const Schema schema = SchemaOf(w);
  const std::vector<Record> records = RecordsOf(w);
  size_t bound = 0;
  for (const Record& r : records) bound += EncodedSizeBound(schema, r);
  std::string buf(bound, '\0');
  const bool integral = schema.all_integral();
  size_t bytes = 0;
  for (auto _ : state) {
    char* p = &buf[0];
    for (const Record& r : records) {
      if (!kCodec) {
        p = BytewiseEncode(schema, r, p);
      } else if (integral) {
        p = EncodeIntegralRecordTo(r, schema.size(), p);
      } else {
        p = EncodeRecordTo(schema, r, p);
      }
    }
    bytes = static_cast<size_t>(p - buf.data());
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  if (buf.substr(0, bytes) != EncodedBuffer(schema, records)) state.SkipWithError("wrong bytes");
  state.SetItemsProcessed(state.iterations() * kRecords);
  state.counters["bytes_per_record"] = static_cast<double>(bytes) / kRecords;
}

template <bool kCodec>
void Decode(benchmark::State& state, Workload w) {
  const Schema schema = SchemaOf(w);
  const std::vector<Record> records = RecordsOf(w);
  const std::string buf = EncodedBuffer(schema, records);
  // The baseline's records are padded to its worst case: the same records after the last one.
  const std::string padded = buf + buf.substr(0, 10 * schema.size());
  std::vector<Record> out(kRecords + 1, Record(schema.size()));
  for (auto _ : state) {
    size_t n = 0;
    if (kCodec) {
      RecordDecoder dec(&schema, buf);
      if (!dec.NextBatch(out.data(), out.size(), &n).ok()) state.SkipWithError("corrupt");
    } else {
      if (!BytewiseDecodeIntegral(schema.size(), padded, buf.size(), out.data(), &n)) {
        state.SkipWithError("corrupt");
      }
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  for (size_t k = 0; k < kRecords; ++k) {
    for (size_t i = 0; i < schema.size(); ++i) {
      if (out[k][i].i != records[k][i].i || out[k][i].s != records[k][i].s) {
        state.SkipWithError("wrong values");
        return;
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * kRecords);
}

// NextIntRows(): the same buffer into rows of int64s (record k's field i at k * width + i), as
// a window folding from rows gets it (session 28), against NextBatch() into Records above.
void DecodeIntRows(benchmark::State& state, Workload w) {
  const Schema schema = SchemaOf(w);
  const std::vector<Record> records = RecordsOf(w);
  const std::string buf = EncodedBuffer(schema, records);
  std::vector<int64_t> out((kRecords + 1) * schema.size());
  for (auto _ : state) {
    size_t n = 0;
    RecordDecoder dec(&schema, buf);
    if (!dec.NextIntRows(out.data(), kRecords + 1, &n).ok() || n != kRecords) state.SkipWithError("corrupt");
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  for (size_t k = 0; k < kRecords; ++k) {
    for (size_t i = 0; i < schema.size(); ++i) {
      if (out[k * schema.size() + i] != records[k][i].i) {
        state.SkipWithError("wrong values");
        return;
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * kRecords);
}

template <bool kCodec>
void DecodeRow(benchmark::State& state, Workload w) {
  const Schema schema = SchemaOf(w);
  const std::vector<Record> records = RecordsOf(w);
  std::string buf;
  std::vector<size_t> ends;
  for (const Record& r : records) {
    EncodeRecord(schema, r, &buf);
    ends.push_back(buf.size());
  }
  std::vector<Record> out(kRecords, Record(schema.size()));
  for (auto _ : state) {
    size_t start = 0;
    for (size_t k = 0; k < kRecords; ++k) {
      const absl::string_view row(buf.data() + start, ends[k] - start);
      start = ends[k];
      if (kCodec) {
        RecordDecoder dec(&schema, row);
        if (!dec.Next(&out[k]).ok()) state.SkipWithError("corrupt");
      } else {
        const char* p = row.data();
        for (size_t i = 0; i < schema.size(); ++i) {
          uint64_t u;
          p = GetVarint64(p, row.data() + row.size(), &u);
          if (p == nullptr) {
            state.SkipWithError("corrupt");
            break;
          }
          out[k][i].i = UnZigZag(u);
        }
      }
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  for (size_t k = 0; k < kRecords; ++k) {
    for (size_t i = 0; i < schema.size(); ++i) {
      if (out[k][i].i != records[k][i].i) {
        state.SkipWithError("wrong values");
        return;
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * kRecords);
}

void BM_EncodeWindowBytewise(benchmark::State& s) { Encode<false>(s, Workload::kWindow); }
void BM_EncodeWindowCodec(benchmark::State& s) { Encode<true>(s, Workload::kWindow); }
void BM_EncodeBid3Bytewise(benchmark::State& s) { Encode<false>(s, Workload::kBid3); }
void BM_EncodeBid3Codec(benchmark::State& s) { Encode<true>(s, Workload::kBid3); }
void BM_EncodeBidBytewise(benchmark::State& s) { Encode<false>(s, Workload::kBid); }
void BM_EncodeBidCodec(benchmark::State& s) { Encode<true>(s, Workload::kBid); }
void BM_DecodeWindowBytewise(benchmark::State& s) { Decode<false>(s, Workload::kWindow); }
void BM_DecodeWindowCodec(benchmark::State& s) { Decode<true>(s, Workload::kWindow); }
void BM_DecodeBid3Bytewise(benchmark::State& s) { Decode<false>(s, Workload::kBid3); }
void BM_DecodeBid3Codec(benchmark::State& s) { Decode<true>(s, Workload::kBid3); }
void BM_DecodeBidCodec(benchmark::State& s) { Decode<true>(s, Workload::kBid); }
void BM_DecodeIntRowsWindow(benchmark::State& s) { DecodeIntRows(s, Workload::kWindow); }
void BM_DecodeIntRowsBid3(benchmark::State& s) { DecodeIntRows(s, Workload::kBid3); }
void BM_DecodeJoinBytewise(benchmark::State& s) { Decode<false>(s, Workload::kJoin); }
void BM_DecodeJoinCodec(benchmark::State& s) { Decode<true>(s, Workload::kJoin); }
void BM_DecodeRowJoinBytewise(benchmark::State& s) { DecodeRow<false>(s, Workload::kJoin); }
void BM_DecodeRowJoinCodec(benchmark::State& s) { DecodeRow<true>(s, Workload::kJoin); }
void BM_DecodeRowBid3Bytewise(benchmark::State& s) { DecodeRow<false>(s, Workload::kBid3); }
void BM_DecodeRowBid3Codec(benchmark::State& s) { DecodeRow<true>(s, Workload::kBid3); }

BENCHMARK(BM_EncodeWindowBytewise);
BENCHMARK(BM_EncodeWindowCodec);
BENCHMARK(BM_EncodeBid3Bytewise);
BENCHMARK(BM_EncodeBid3Codec);
BENCHMARK(BM_EncodeBidBytewise);
BENCHMARK(BM_EncodeBidCodec);
BENCHMARK(BM_DecodeWindowBytewise);
BENCHMARK(BM_DecodeWindowCodec);
BENCHMARK(BM_DecodeBid3Bytewise);
BENCHMARK(BM_DecodeBid3Codec);
BENCHMARK(BM_DecodeBidCodec);
BENCHMARK(BM_DecodeIntRowsWindow);
BENCHMARK(BM_DecodeIntRowsBid3);
BENCHMARK(BM_DecodeJoinBytewise);
BENCHMARK(BM_DecodeJoinCodec);
BENCHMARK(BM_DecodeRowJoinBytewise);
BENCHMARK(BM_DecodeRowJoinCodec);
BENCHMARK(BM_DecodeRowBid3Bytewise);
BENCHMARK(BM_DecodeRowBid3Codec);

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
