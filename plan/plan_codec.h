#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "plan/job_graph.h"
#include "plan/job_spec.h"
#include "plan/operator_type.h"
#include "proto/plan.pb.h"

namespace sluice::plan {

// A planned job travels as a proto::JobPlan (proto/plan.proto): the coordinator plans the job
// once, at submission (ParseJobSpec, BuildJobGraph), encodes it, stores it with the job (HA
// record) and sends it in every deployment; workers decode it and parse each operator's
// options with their own copy of its type. Nobody plans the YAML twice, and vertex, edge and
// operator ids are the ones the coordinator chose.
//
// Operator options travel as text: each operator's own YAML mapping (OperatorSpec::
// options_yaml), already validated at submission. A per-type binary encoding would make every
// operator type (plugins included, whose options are the plugin's own JSON) write and version
// a serializer; the type's parser already is the one definition of its options. The worker
// runs that parser in Deploy(), before any task thread exists, so a worker whose type refuses
// the options (another version of the type, a plugin that validates differently) fails the
// deployment with the operator's id and the reason, and the job fails with it.

// The format this code writes and the newest it reads. Bump it when a change to JobPlan would
// make an older reader build something else (a new meaning, not a new optional field).
inline constexpr uint32_t kJobPlanFormatVersion = 1;

struct PlannedJob {
  JobSpec spec;
  JobGraph graph;
};

// `graph` is BuildJobGraph(job). Warnings are not encoded (shown at submission).
proto::JobPlan EncodeJobPlan(const JobSpec& job, const JobGraph& graph);

// Decodes a plan and checks that it is consistent (references in range, inputs before their
// consumers, every operator in exactly one vertex, chains and edges matching the operators'
// inputs, known field types and partitions), so that nothing built from it indexes out of
// range. Options are not parsed: every OperatorSpec has options_yaml and null options (enough
// for the coordinator, which runs no operator). Errors are kFailedPrecondition: "job plan
// format version N is newer than this worker's (M): ..." (and format 0: no plan at all), or
// "invalid job plan: <what>".
absl::StatusOr<PlannedJob> DecodeJobPlan(const proto::JobPlan& plan);

// Parses every operator's options_yaml with its type from `catalog` into OperatorSpec::options,
// in topological order, and checks that the type agrees with the plan (traits, output schema,
// output key). Errors are kFailedPrecondition naming the operator: "job.yaml:12:5: operator
// 'f' (filter): unknown operator type 'filter' here (known: ...)", "...: options refused by
// this worker: <reason>".
absl::Status ParsePlannedOptions(const OperatorTypeCatalog& catalog, JobSpec* job);

}  // namespace sluice::plan
