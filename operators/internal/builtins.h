#pragma once

#include <cstdint>
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
// The memory of open windows (estimated) above which windows opened afterwards go to the
// backend (default 256 MiB per subtask); 0 restores the default. Tests only, before any task
// runs.
void SetWindowMemoryForTest(size_t bytes);
// Whether windows opened afterwards may keep hopping windows per slide pane (default true);
// false: every window has its own accumulators. Tests only, to compare the two.
void SetWindowSlidePanesForTest(bool enabled);
// Whether session windows may fold a record into a session's accumulator in place and extend
// a session that has not fired without merging it into a fresh one (default true); false:
// the general path for every record. Tests only, to compare the two.
void SetWindowSessionFastPathsForTest(bool enabled);
// Whether windows whose key is one integer field and whose accumulators have no strings keep
// their panes in flat slots by the key's value, and session windows of such keys find a key's
// sessions by its value, a key's one open session in its slot (default true); false: by key
// record bytes in hash maps. Tests only, to compare the two.
void SetWindowIntKeyPanesForTest(bool enabled);
// The panes (and session keys) made in flat slots by integer keys so far (all subtasks of the
// process).
uint64_t WindowIntKeyPanesMadeForTest();
// Whether tumbling windows and slide panes of such keys take batches and fold them in place
// (default true); false: Process() per record. Tests only, to compare the two.
void SetWindowFoldBatchesForTest(bool enabled);
// The records folded in place by batches so far (all subtasks of the process).
uint64_t WindowBatchFoldsForTest();
// How many batches of input rows of integers windows have taken (ProcessIntRows), for tests.
uint64_t WindowIntRowBatchesForTest();
// Whether tumbling windows' buckets folding batches start with narrow slots (key, record count,
// aggregates' words) until a path needs the panes' words (default true); false: the panes' words
// from the start. Tests only, to compare the two.
void SetWindowNarrowPanesForTest(bool enabled);
// The window buckets made narrow so far, and those of them widened (all subtasks of the process).
uint64_t WindowNarrowBucketsMadeForTest();
uint64_t WindowNarrowBucketsWidenedForTest();
// The firings that fired every key of a session index and dropped the index whole (all
// subtasks of the process).
uint64_t WindowSessionIndexDropsForTest();
// Rows fired straight from narrow count slots (FireNarrowCounts).
uint64_t WindowNarrowCountRowsForTest();
// Whether a tumbling window's firing of integer keys may take their order from its key group's
// last firing of the same keys instead of sorting them (default true). Tests only.
void SetWindowFireOrderReuseForTest(bool enabled);
// The firings that took their keys' order from the key group's last firing (all subtasks of the
// process).
uint64_t WindowFireOrdersReusedForTest();
std::unique_ptr<Operator> MakeTopN();           // top_n.cc
std::unique_ptr<Operator> MakeLocalTopN();      // top_n.cc
// Whether top_n keeps its last group's rows decoded between records (default true); false:
// every record reads its group's state. Tests only, to compare the two.
void SetTopNGroupCacheForTest(bool enabled);
std::unique_ptr<Operator> MakeFileSink();       // file_sink.cc
std::unique_ptr<Operator> MakePrintSink();      // print_sink.cc
std::unique_ptr<Operator> MakeBlackholeSink();  // blackhole_sink.cc
std::unique_ptr<Operator> MakeNexmarkSource();  // nexmark/nexmark_source.cc
std::unique_ptr<Operator> MakeIntervalJoin();   // interval_join.cc
std::unique_ptr<Operator> MakeRegularJoin();    // regular_join.cc
std::unique_ptr<Operator> MakeWindowJoin();     // window_join.cc

}  // namespace sluice::ops
