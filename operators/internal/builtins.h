#pragma once

#include <memory>

#include "operators/operator.h"

namespace sluice::ops {

// Factories of the built-in operators, one per file (<type>.cc); their options are in
// <type>_options.h. RegisterBuiltinOperators() (registry.cc) pairs each with its type.
std::unique_ptr<Operator> MakeDatagen();        // datagen.cc
std::unique_ptr<Operator> MakeFilter();         // filter.cc
std::unique_ptr<Operator> MakeMap();            // map.cc
std::unique_ptr<Operator> MakeKeyBy();          // pass_through.cc
std::unique_ptr<Operator> MakeUnion();          // pass_through.cc
std::unique_ptr<Operator> MakeAggregate();      // aggregate.cc
std::unique_ptr<Operator> MakeWindow();         // window.cc
std::unique_ptr<Operator> MakeTopN();           // top_n.cc
std::unique_ptr<Operator> MakeFileSink();       // file_sink.cc
std::unique_ptr<Operator> MakePrintSink();      // print_sink.cc
std::unique_ptr<Operator> MakeBlackholeSink();  // blackhole_sink.cc
std::unique_ptr<Operator> MakeNexmarkSource();  // nexmark/nexmark_source.cc
std::unique_ptr<Operator> MakeIntervalJoin();   // interval_join.cc
std::unique_ptr<Operator> MakeRegularJoin();    // regular_join.cc
std::unique_ptr<Operator> MakeWindowJoin();     // window_join.cc

}  // namespace sluice::ops
