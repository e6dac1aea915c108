#pragma once

// Byte layouts of the RocksDB keyed state backend. Not API: only state/ includes this.
//
//   state entry   [key group: 2 BE][state id: 1][varint32 key length][key][map user key]
//   timer         [key group: 2 BE][kTimerStateId][domain: 1][timestamp: 8 BE, sign flipped]
//                 [varint32 key length][key]
//   state meta    kMetaPrefix [state name]  ->  [state id: 1][kind: 1]
//   stored value  [expiry millis: 8 BE, 0 = never][payload]
//   list payload  ([varint32 element length][element])*
//   format        kFormatKey  ->  [format version: 1]
//
// Format versions of a backend's DB: 0 (no kFormatKey: written before versions existed), 1
// (this layout, with kFormatKey) and 2 (the same layout; a snapshot's handle may name a delta
// file, delta_file.h, holding the entries its DB lacks). A DB of a newer version is refused on
// restore (kDataLoss), so a build that does not know delta files refuses version 2 snapshots
// instead of restoring them without their delta.
//
// Key groups are < 32768, so every key-group prefix sorts before kMetaPrefix ("\xff\xff"), and
// timers (state id 0xff) sort after the state entries of their key group. Big-endian timestamps
// with the sign bit flipped sort in timestamp order, negatives first.
//
// Decoders never trust their input: they return false on malformed bytes.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace sluice::state::internal {

inline constexpr uint8_t kTimerStateId = 0xff;
inline constexpr int kMaxStates = 255;  // state ids 0..254
inline constexpr absl::string_view kMetaPrefix("\xff\xff", 2);
inline constexpr size_t kExpiryBytes = 8;
// Sorts after every key group's entries (as kMetaPrefix) and before the state meta.
inline constexpr absl::string_view kFormatKey("\xff\xfe", 2);
inline constexpr int kFormatVersion = 2;

inline void PutFixed16BE(std::string* dst, uint16_t v) {
  dst->push_back(static_cast<char>(v >> 8));
  dst->push_back(static_cast<char>(v & 0xff));
}

inline uint16_t DecodeFixed16BE(const char* p) {
  return static_cast<uint16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
}

inline void EncodeFixed64BE(char* dst, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    dst[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

inline void PutFixed64BE(std::string* dst, uint64_t v) {
  char buf[8];
  EncodeFixed64BE(buf, v);
  dst->append(buf, 8);
}

inline uint64_t DecodeFixed64BE(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

inline void PutVarint32(std::string* dst, uint32_t v) {
  while (v >= 0x80) {
    dst->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  dst->push_back(static_cast<char>(v));
}

// Consumes a varint32 from the front of *in.
inline bool GetVarint32(absl::string_view* in, uint32_t* v) {
  uint32_t result = 0;
  for (int shift = 0, i = 0; shift <= 28 && i < static_cast<int>(in->size()); shift += 7, ++i) {
    uint32_t byte = static_cast<uint8_t>((*in)[i]);
    result |= (byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      in->remove_prefix(i + 1);
      *v = result;
      return true;
    }
  }
  return false;
}

// Consumes a varint32-length-prefixed byte string from the front of *in.
inline bool GetLengthPrefixed(absl::string_view* in, absl::string_view* out) {
  uint32_t len;
  if (!GetVarint32(in, &len) || len > in->size()) return false;
  *out = in->substr(0, len);
  in->remove_prefix(len);
  return true;
}

inline uint64_t FlipSign(int64_t ts) { return static_cast<uint64_t>(ts) ^ (uint64_t{1} << 63); }
inline int64_t UnflipSign(uint64_t v) { return static_cast<int64_t>(v ^ (uint64_t{1} << 63)); }

// [kg][id]
inline void AppendStatePrefix(std::string* dst, int key_group, uint8_t id) {
  PutFixed16BE(dst, static_cast<uint16_t>(key_group));
  dst->push_back(static_cast<char>(id));
}

// Writes [kg][id][varint32 key length] at `p` (room for 8 bytes); returns its length.
inline size_t EncodeStateKeyHeader(char* p, int key_group, uint8_t id, uint32_t key_len) {
  p[0] = static_cast<char>(static_cast<uint16_t>(key_group) >> 8);
  p[1] = static_cast<char>(key_group & 0xff);
  p[2] = static_cast<char>(id);
  size_t n = 3;
  while (key_len >= 0x80) {
    p[n++] = static_cast<char>((key_len & 0x7f) | 0x80);
    key_len >>= 7;
  }
  p[n++] = static_cast<char>(key_len);
  return n;
}

// [kg][id][len][key]: the whole key of value and list state, the prefix of map entries.
inline void AppendStateKey(std::string* dst, int key_group, uint8_t id, absl::string_view key) {
  AppendStatePrefix(dst, key_group, id);
  PutVarint32(dst, static_cast<uint32_t>(key.size()));
  dst->append(key.data(), key.size());
}

// [kg][kTimerStateId][domain]: the prefix of one key group's timers of one domain.
inline void AppendTimerPrefix(std::string* dst, int key_group, int domain) {
  AppendStatePrefix(dst, key_group, kTimerStateId);
  dst->push_back(static_cast<char>(domain));
}

inline void AppendTimerKey(std::string* dst, int key_group, int domain, int64_t timestamp,
                           absl::string_view key) {
  AppendTimerPrefix(dst, key_group, domain);
  PutFixed64BE(dst, FlipSign(timestamp));
  PutVarint32(dst, static_cast<uint32_t>(key.size()));
  dst->append(key.data(), key.size());
}

struct DecodedStateKey {
  int key_group = 0;
  uint8_t id = 0;
  absl::string_view key;
  absl::string_view suffix;  // the map user key; empty for value and list state
};

inline bool DecodeStateKey(absl::string_view in, DecodedStateKey* out) {
  if (in.size() < 3) return false;
  out->key_group = DecodeFixed16BE(in.data());
  out->id = static_cast<uint8_t>(in[2]);
  in.remove_prefix(3);
  if (!GetLengthPrefixed(&in, &out->key)) return false;
  out->suffix = in;
  return true;
}

struct DecodedTimerKey {
  int key_group = 0;
  int domain = 0;
  int64_t timestamp = 0;
  absl::string_view key;
};

inline bool DecodeTimerKey(absl::string_view in, DecodedTimerKey* out) {
  if (in.size() < 12 || static_cast<uint8_t>(in[2]) != kTimerStateId) return false;
  out->key_group = DecodeFixed16BE(in.data());
  out->domain = static_cast<uint8_t>(in[3]);
  out->timestamp = UnflipSign(DecodeFixed64BE(in.data() + 4));
  in.remove_prefix(12);
  return GetLengthPrefixed(&in, &out->key) && in.empty();
}

inline void AppendStoredValue(std::string* dst, int64_t expiry_ms, absl::string_view payload) {
  PutFixed64BE(dst, static_cast<uint64_t>(expiry_ms));
  dst->append(payload.data(), payload.size());
}

inline bool DecodeStoredValue(absl::string_view in, int64_t* expiry_ms,
                              absl::string_view* payload) {
  if (in.size() < kExpiryBytes) return false;
  *expiry_ms = static_cast<int64_t>(DecodeFixed64BE(in.data()));
  *payload = in.substr(kExpiryBytes);
  return true;
}

inline void AppendListElement(std::string* blob, absl::string_view element) {
  PutVarint32(blob, static_cast<uint32_t>(element.size()));
  blob->append(element.data(), element.size());
}

// Replaces *out with the elements of `blob`.
inline bool DecodeList(absl::string_view blob, std::vector<std::string>* out) {
  out->clear();
  absl::string_view element;
  while (!blob.empty()) {
    if (!GetLengthPrefixed(&blob, &element)) return false;
    out->emplace_back(element.data(), element.size());
  }
  return true;
}

}  // namespace sluice::state::internal
