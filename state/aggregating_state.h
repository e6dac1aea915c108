#pragma once

#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "state/keyed_state_backend.h"

namespace sluice::state {

// Aggregating state (Flink's AggregatingState) on a backend's value state: Add() folds an input
// into the current key's accumulator; Get() returns the result, or nullopt for a key with none.
// The accumulator is stored as [format version 1: 1 byte][its bytes], so it must be trivially
// copyable; values of exactly sizeof(Acc) bytes (written before the version byte) read as
// format 0, anything else is kDataLoss naming the backend's origin. The backend's
// write-back cache makes Add() on a hot key cost no RocksDB round trip. Used on the owning
// task's thread, like the backend.
template <typename In, typename Acc, typename Out>
class AggregatingState {
  static_assert(std::is_trivially_copyable<Acc>::value, "accumulators are stored as bytes");

 public:
  struct Functions {
    std::function<Acc()> create;
    std::function<void(Acc&, const In&)> add;
    std::function<Out(const Acc&)> result;
  };

  AggregatingState(KeyedStateBackend* backend, const std::string& name, Functions fns,
                   int64_t ttl_ms = 0)
      : backend_(backend),
        id_(backend->RegisterState(name, StateKind::kValue, ttl_ms)),
        fns_(std::move(fns)) {}

  // REQUIRES: the backend's current key is set.
  absl::Status Add(const In& value) {
    Acc acc;
    SLUICE_ASSIGN_OR_RETURN(bool found, Load(&acc));
    if (!found) acc = fns_.create();
    fns_.add(acc, value);
    scratch_.assign(1, static_cast<char>(kFormatVersion));
    scratch_.append(reinterpret_cast<const char*>(&acc), sizeof(Acc));
    return backend_->Put(id_, scratch_);
  }

  absl::StatusOr<std::optional<Out>> Get() {
    Acc acc;
    SLUICE_ASSIGN_OR_RETURN(bool found, Load(&acc));
    if (!found) return std::optional<Out>();
    return std::optional<Out>(fns_.result(acc));
  }

  absl::Status Clear() { return backend_->Delete(id_); }

 private:
  absl::StatusOr<bool> Load(Acc* acc) {
    SLUICE_ASSIGN_OR_RETURN(bool found, backend_->Get(id_, &scratch_));
    if (!found) return false;
    absl::string_view body = scratch_;  // format 0: the bytes alone
    if (scratch_.size() != sizeof(Acc)) {
      SLUICE_ASSIGN_OR_RETURN(int version, ReadStateVersion(backend_->origin(), "aggregating state",
                                                            scratch_, kFormatVersion, &body));
      (void)version;
      if (body.size() != sizeof(Acc)) {
        return backend_->origin().DataLoss(absl::StrCat("aggregating state holds ", scratch_.size(),
                                                        " bytes, expected ", sizeof(Acc) + 1));
      }
    }
    std::memcpy(acc, body.data(), sizeof(Acc));
    return true;
  }

  static constexpr int kFormatVersion = 1;

  KeyedStateBackend* backend_;
  StateId id_;
  Functions fns_;
  std::string scratch_;
};

// Reducing state (Flink's ReducingState): the accumulator is the value type itself.
template <typename T>
class ReducingState {
 public:
  ReducingState(KeyedStateBackend* backend, const std::string& name,
                std::function<T(const T&, const T&)> reduce, int64_t ttl_ms = 0)
      : state_(backend, name,
               {[] { return Item{}; }, [this](Item& acc, const T& v) {
                  acc.value = acc.has ? reduce_(acc.value, v) : v;
                  acc.has = true;
                }, [](const Item& acc) { return acc.value; }},
               ttl_ms),
        reduce_(std::move(reduce)) {}

  absl::Status Add(const T& value) { return state_.Add(value); }
  absl::StatusOr<std::optional<T>> Get() { return state_.Get(); }
  absl::Status Clear() { return state_.Clear(); }

 private:
  struct Item {
    T value{};
    bool has = false;
  };
  AggregatingState<T, Item, T> state_;
  std::function<T(const T&, const T&)> reduce_;
};

}  // namespace sluice::state
